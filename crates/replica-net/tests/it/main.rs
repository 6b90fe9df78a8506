//! The protocol core against a scripted master, and the driver against real servers.

mod cluster;
mod model;
mod pki;
mod proto;
mod real;
mod sentinel;
