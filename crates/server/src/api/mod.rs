//! The client-facing front ends, etcd's `etcdserver/api` (`v3rpc`, the gateway, `etcdhttp`):
//! the gRPC services with the hand-framed KV paths ([`grpc`]), the JSON gateway
//! ([`json_gateway`]), the HTTP endpoints ([`http`]: health probes, `/version`, `/metrics`, the
//! dashboard), and request tracing ([`otel`]).
//!
//! A handler translates a request, calls [`crate::etcdserver`]'s typed API and translates the
//! answer; semantics live below it. It must not be imported by `etcdserver`, and it does not
//! start listeners (that is [`crate::embed`]'s).

pub mod caller;
pub mod dashboard;
pub mod grpc;
pub mod h2_authority;
pub mod http;
pub mod json_gateway;
pub mod metrics;
pub mod observed_body;
pub mod otel;
pub mod probes;
