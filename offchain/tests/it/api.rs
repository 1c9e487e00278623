//! The event system serves its interface as `lockstep-api` describes it:
//! every method a client calls in JSON-RPC batches by name is served.

use lockstep_api::offchain::methods::BATCHED;
use lockstep_api::RpcApiClient;

use crate::harness::{DevNode, EventSystem};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_called_by_name_is_served() {
    let node = DevNode::start().await;
    let events = EventSystem::start(vec![node.url()], "1/1").await;
    let listing = events.http.methods().await.unwrap();
    assert_eq!(listing.version, 1);
    for method in BATCHED {
        assert!(
            listing.methods.iter().any(|m| m == method),
            "{method} is not served: {:?}",
            listing.methods
        );
    }
    assert!(listing.methods.iter().any(|m| m == "rpc_methods"));

    events.stop().await;
    node.stop().await;
}
