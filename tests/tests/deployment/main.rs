//! Deployment: the container image, systemd unit, Debian package, Kubernetes manifests and the Helm chart.
//!
//! One test binary per subject, a module per file (tests/README.md says where a new test goes).

mod deployment;
mod helm_chart;
