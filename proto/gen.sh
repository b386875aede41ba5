#!/usr/bin/env bash
# Regenerates the committed *.pb.go files. Needs protoc (Debian:
# apt-get install protobuf-compiler); the Go plugins are pinned here and
# fetched through the Go module proxy into a temporary GOBIN.
set -euo pipefail
cd "$(dirname "$0")/.."
PROTOC_GEN_GO=google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC=google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
GOBIN=$bin go install "$PROTOC_GEN_GO"
GOBIN=$bin go install "$PROTOC_GEN_GO_GRPC"
for f in proto/*/*.proto; do
  PATH=$bin:$PATH protoc -I proto \
    --go_out=proto --go_opt=paths=source_relative \
    --go-grpc_out=proto --go-grpc_opt=paths=source_relative \
    "$f"
done
