//! Errors of the raft layer.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("raft log: {0}")]
    Engine(#[from] raft_engine::Error),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("raft log corrupt: {0}")]
    Corrupt(String),
    #[error("raft node stopped")]
    Stopped,
}

pub type Result<T> = std::result::Result<T, Error>;
