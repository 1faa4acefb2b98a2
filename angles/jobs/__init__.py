"""The scheduler daemon: job table, host lock, leader election, worker threads and the state file."""
