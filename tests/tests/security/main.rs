//! Security: users, roles and permissions (and attacks on them), client and peer TLS.
//!
//! One test binary per subject, a module per file (tests/README.md says where a new test goes).

mod auth;
mod auth_attacks;
mod tls;
