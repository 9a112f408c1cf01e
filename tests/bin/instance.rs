//! One instance of the example receiver, for tests that run several processes.

#[path = "../../examples/receiver.rs"]
mod receiver;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    receiver::main()
}
