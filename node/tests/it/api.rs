//! The node serves its interface as `lockstep-api` describes it: every
//! method a client calls in JSON-RPC batches by name is served.

use lockstep_api::node::methods::BATCHED;
use lockstep_api::RpcApiClient;

use crate::harness::DevNode;

#[tokio::test]
async fn every_method_called_by_name_is_served() {
    let node = DevNode::start().await;
    let listing = node.http.methods().await.unwrap();
    assert_eq!(listing.version, 1);
    for method in BATCHED {
        assert!(
            listing.methods.iter().any(|m| m == method),
            "{method} is not served: {:?}",
            listing.methods
        );
    }
    assert!(listing.methods.iter().any(|m| m == "rpc_methods"));
}
