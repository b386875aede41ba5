// A Node.js client of the greeter through xDS: @grpc/grpc-js with
// @grpc/grpc-js-xds, the bootstrap in GRPC_XDS_BOOTSTRAP_CONFIG. It makes
// CALLS unary calls to xds:///greeter and prints, as one JSON line, how
// many each node answered and how many failed. Usage:
//   node xds_client.js PROTOSET CALLS
// PROTOSET is a serialized FileDescriptorSet of the greeter and its
// imports.
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
require('@grpc/grpc-js-xds').register();

const [protoPath, callsArg] = process.argv.slice(2);
const calls = parseInt(callsArg, 10);
const def = protoLoader.loadFileDescriptorSetFromBuffer(require('fs').readFileSync(protoPath), { keepCase: true });
const pkg = grpc.loadPackageDefinition(def).greeter;
const client = new pkg.Greeter('xds:///greeter', grpc.credentials.createInsecure());

const nodes = {};
let failed = 0;
const errors = [];

function hello() {
  return new Promise((resolve) => {
    const deadline = new Date(Date.now() + 10000);
    client.Hello({ name: 'node' }, { deadline }, (err, rsp) => {
      if (err) {
        failed++;
        if (errors.length < 5) errors.push(`${err.code}: ${err.details}`);
      } else {
        nodes[rsp.node] = (nodes[rsp.node] || 0) + 1;
      }
      resolve();
    });
  });
}

(async () => {
  for (let i = 0; i < calls; i++) {
    await hello();
  }
  console.log(JSON.stringify({ nodes, failed, errors }));
  client.close();
  process.exit(0);
})();
