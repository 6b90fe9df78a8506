//! Integration tests for the RDB decoder.

mod corpus;
mod dump_real;
mod encode;
mod newest;
mod robustness;
mod validation;
