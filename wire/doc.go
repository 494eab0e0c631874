// Package wire carries flow logs from agents to the server over gRPC: a
// non-blocking, bounded, batching Shipper on the agent and a validating
// Receiver on the server, speaking the sightlinepb protocol compressed with
// zstd (the receiver also takes gzip and uncompressed calls).
package wire

// Regenerate with protoc 3.21+, protoc-gen-go v1.36.12 and protoc-gen-go-grpc v1.6.1 on PATH.
//go:generate protoc -I sightlinepb --go_out=sightlinepb --go_opt=paths=source_relative --go-grpc_out=sightlinepb --go-grpc_opt=paths=source_relative sightline.proto
