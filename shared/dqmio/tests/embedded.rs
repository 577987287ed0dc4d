//! Baskets kept inside the TTree record (a tree written while its baskets were still in memory),
//! written by ROOT with tests/fixtures/gen_embedded.py.

mod common;

use std::sync::Arc;

use dials_dqmio::file::RootFile;
use dials_dqmio::tree::{read_basket, Tree};
use dials_dqmio::LocalFile;

#[test]
fn embedded_baskets_are_read() {
    let src = Arc::new(
        LocalFile::open(common::fixtures().join("embedded_baskets.root")).expect("fixture"),
    );
    let file = RootFile::open(src).expect("open");
    let key = file.key("Indices").expect("key").clone();
    let tree = Tree::read(&file, &key).expect("tree");
    assert_eq!(tree.entries, 25);
    let run = tree.branch("Run").expect("Run");
    assert!(
        run.baskets.is_empty() && run.embedded.is_some(),
        "the fixture keeps its basket in the tree record"
    );
    let values = run.read_integers(&file).expect("Run values");
    assert_eq!(values, (100..125).map(i128::from).collect::<Vec<_>>());
    let names = tree.branch("Name").expect("Name");
    let b = read_basket(&file, names, names.basket_of(0).expect("basket")).expect("basket");
    assert_eq!(b.len(), 25);
    for i in 0..25usize {
        let raw = b.entry(i).expect("entry");
        let want = format!("me_{i}").repeat(i % 3 + 1);
        assert_eq!(&raw[1..], want.as_bytes(), "entry {i}");
        assert_eq!(raw[0] as usize, want.len());
    }
}
