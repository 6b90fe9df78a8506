//! Integration tests for the RDB decoder.

mod chunked;
mod corpus;
mod dump_real;
mod encode;
mod golden;
mod newest;
mod packed;
mod parallel;
mod robustness;
mod validation;
mod visit;
