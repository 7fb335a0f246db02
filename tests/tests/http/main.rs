//! HTTP: the JSON gateway (and Python's gateway client), /metrics with Prometheus, health probes, the dashboard in a browser, request tracing.
//!
//! One test binary per subject, a module per file (tests/README.md says where a new test goes).

mod dashboard;
mod json_gateway;
mod metrics;
mod probes;
mod python_clients;
mod tracing;
