//! The sink core against a simulated cluster, and the driver against real servers.

mod core;
