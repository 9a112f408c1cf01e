//! A child process that ends with its test.

use std::process::Child;

/// A child process, killed (and reaped) when dropped.
#[derive(Debug)]
pub struct Kill(pub Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
