//! Stopping a worker binary the way an orchestrator does.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Sends SIGTERM to `child` and waits (30 s at most) for it to exit 0.
pub fn sigterm(mut child: Child) {
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            assert!(s.success(), "{s:?}");
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the worker did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
