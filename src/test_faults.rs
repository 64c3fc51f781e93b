//! Faults a test can ask for through a job, compiled only with the `test-faults` feature (which
//! only the crate's own tests enable), so a production build cannot be made to honour them.

use crate::contract::Job;

/// The job attribute that asks for a fault.
pub const ATTRIBUTE: &str = "silentauth.test_fault";

/// Honours the job's fault, if any: `"panic"` panics inside the job's verification.
pub fn inject(job: &Job) {
    if job.attributes.get(ATTRIBUTE).is_some_and(|v| v == "panic") {
        panic!("test fault: job {} asked for a panic", job.job_id);
    }
}
