//! The in-memory store passes the store conformance suite every store
//! passes, opened through its descriptor from `memory:`.

use mailgate_core::OutboxDescriptor;
use mailgate_outbox::testing::{Backend, run_all};

struct Memory;

#[mailgate_core::async_trait]
impl Backend for Memory {
    fn descriptor(&self) -> &'static OutboxDescriptor {
        &mailgate_outbox_memory::DESCRIPTOR
    }

    async fn new_url(&self) -> String {
        // Each open is a new, empty outbox.
        "memory:".into()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_memory_store_passes_the_conformance_suite() {
    run_all(&Memory).await;
}
