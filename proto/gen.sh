#!/usr/bin/env bash
# Regenerates the committed *.pb.go files. Needs protoc (Debian:
# apt-get install protobuf-compiler); the Go plugins are pinned here and
# fetched through the Go module proxy into a temporary GOBIN. The
# google.api.http annotations (google/api/annotations.proto, http.proto)
# come from a pinned module that carries them, also through the proxy.
set -euo pipefail
cd "$(dirname "$0")/.."
PROTOC_GEN_GO=google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC=google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
GOOGLEAPIS_MODULE=github.com/grpc-ecosystem/grpc-gateway@v1.16.0 # third_party/googleapis
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
GOBIN=$bin go install "$PROTOC_GEN_GO"
GOBIN=$bin go install "$PROTOC_GEN_GO_GRPC"
# Outside this module, so that the download leaves go.mod and go.sum alone.
googleapis=$(cd "$bin" && go mod download -json "$GOOGLEAPIS_MODULE" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')/third_party/googleapis
test -f "$googleapis/google/api/annotations.proto"
for f in proto/*/*.proto; do
  PATH=$bin:$PATH protoc -I proto -I "$googleapis" \
    --go_out=proto --go_opt=paths=source_relative \
    --go-grpc_out=proto --go-grpc_opt=paths=source_relative \
    "$f"
done
