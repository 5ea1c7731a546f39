//! Health from Hadoop itself: parsers for the masters' answers, and their join with a
//! cluster's instances.

pub mod namenode;
pub mod resourcemanager;
