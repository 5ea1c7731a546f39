//! Builders for the lifecycle's table tests.
