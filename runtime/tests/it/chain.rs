//! A small in-memory chain for tests: genesis, then blocks built and imported.

use lockstep_runtime::execution::{build_block, check_block, BlockTemplate, Built};
use lockstep_runtime::genesis::{DEV_ASSET, DEV_ENDOWMENT};
use lockstep_runtime::{
    AccountId, BlockLimits, Candidates, ChainSpec, Header, Keypair, MemoryStore, SignedTx,
    SigningContext, StateReader,
};

pub struct TestChain {
    pub store: MemoryStore,
    pub head: Header,
    pub context: SigningContext,
    pub limits: BlockLimits,
}

impl TestChain {
    pub fn dev() -> TestChain {
        let spec = ChainSpec::dev("lockstep-test", &[Keypair::dev("alice").public()]);
        let genesis = spec.genesis().unwrap();
        let mut store = MemoryStore::default();
        store.apply(&genesis.changes.writes);
        TestChain {
            store,
            head: genesis.block.header.clone(),
            context: genesis.signing_context(),
            limits: BlockLimits::default(),
        }
    }

    pub fn state(&self) -> StateReader<'_> {
        StateReader::new(&self.store)
    }

    /// Builds the next block from `candidates`, checks it as an importer
    /// would on a copy of the state, then commits it.
    pub fn produce(&mut self, candidates: Vec<SignedTx>) -> Built {
        let template = BlockTemplate {
            parent: &self.head,
            timestamp: self.head.timestamp + 1000,
            proposer: Keypair::dev("alice").public(),
        };
        let built = build_block(
            &self.store,
            &self.context,
            template,
            (candidates, Candidates::Unverified),
            &self.limits,
        )
        .unwrap();
        let checked = check_block(
            &self.store,
            &self.context,
            &self.head,
            &built.block,
            &self.limits,
        )
        .unwrap();
        assert_eq!(checked, built.executed, "importer and builder disagree");
        self.store.apply(&built.executed.changes.writes);
        self.head = built.block.header.clone();
        assert_eq!(self.state().root().unwrap(), self.head.state_root);
        built
    }

    pub fn transfer(&self, from: &Keypair, nonce: u64, to: AccountId, amount: u128) -> SignedTx {
        let call = lockstep_runtime::Call::Transfer {
            asset: DEV_ASSET,
            to,
            amount,
            reference: None,
        };
        SignedTx::sign(from, &self.context, nonce, self.head.number + 100, call)
    }
}

pub fn dev(name: &str) -> Keypair {
    Keypair::dev(name)
}

pub const ENDOWMENT: u128 = DEV_ENDOWMENT;
