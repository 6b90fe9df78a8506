//! Integration tests for the RDB decoder.

mod corpus;
mod encode;
mod robustness;
