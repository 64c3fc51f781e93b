//! Test and tool support, not part of the product: what `demo`, `bench` and the tests run the
//! worker against. The worker's own code (`run`, `replay-dlq`, `doctor`) imports nothing from
//! here.

pub mod embedded;
