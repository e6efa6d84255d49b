use super::*;
use proptest::prelude::*;

fn entry(id: u64, owner: &str, idle_ms: i64, deliveries: i64) -> PendingEntry {
    PendingEntry {
        id: format!("{id}-0"),
        owner: owner.as_bytes().into(),
        idle_ms,
        deliveries,
    }
}

fn consumer(name: &str, pending: i64, idle_ms: i64) -> Consumer {
    Consumer {
        name: name.as_bytes().to_vec(),
        pending,
        idle_ms,
    }
}

fn keepers() -> Keepers {
    Keepers {
        to: b"recovery".to_vec(),
        quarantine: b"quarantine".to_vec(),
    }
}

fn rules(count: usize, scan: usize) -> ClaimRules {
    ClaimRules {
        min_idle_ms: 1000,
        count,
        scan,
        max_deliveries: None,
    }
}

#[test]
fn moves_only_idle_entries_of_other_consumers() {
    let pel = [
        entry(1, "dead", 5000, 1),
        entry(2, "live", 10, 1),
        entry(3, "recovery", 9000, 1),
        entry(4, "quarantine", 9000, 7),
        entry(5, "dead", 1000, 2),
    ];
    let plan = plan_claims(pel.to_vec(), &rules(100, 1000), &keepers(), true);
    assert_eq!(plan.ids_to(Destination::Target), ["1-0", "5-0"]);
    assert_eq!(plan.scanned, 5);
    assert_eq!(plan.cursor, None, "fewer than SCAN entries: the PEL ended");
}

#[test]
fn poison_entries_go_to_quarantine() {
    let pel = [entry(1, "dead", 5000, 3), entry(2, "dead", 5000, 2)];
    let rules = ClaimRules {
        max_deliveries: Some(3),
        ..rules(100, 1000)
    };
    let plan = plan_claims(pel.to_vec(), &rules, &keepers(), true);
    assert_eq!(plan.ids_to(Destination::Quarantine), ["1-0"]);
    assert_eq!(plan.ids_to(Destination::Target), ["2-0"]);
}

#[test]
fn stops_at_count_and_continues_after_the_last_examined_entry() {
    let pel: Vec<_> = (1..=10).map(|i| entry(i, "dead", 5000, 1)).collect();
    let plan = plan_claims(pel.to_vec(), &rules(3, 10), &keepers(), false);
    assert_eq!(plan.moves.len(), 3);
    assert_eq!(plan.scanned, 3);
    assert_eq!(plan.cursor.as_deref(), Some("3-0"));
}

#[test]
fn a_full_page_keeps_a_cursor_even_when_nothing_moved() {
    let pel: Vec<_> = (1..=4).map(|i| entry(i, "live", 0, 1)).collect();
    let plan = plan_claims(pel.to_vec(), &rules(2, 4), &keepers(), false);
    assert!(plan.moves.is_empty());
    assert_eq!(plan.scanned, 4);
    assert_eq!(plan.cursor.as_deref(), Some("4-0"));
}

#[test]
fn empty_pel_is_the_end() {
    let plan = plan_claims(Vec::new(), &rules(1, 1), &keepers(), true);
    assert_eq!(plan, ClaimPlan::default());
}

#[test]
fn deletes_only_empty_consumers_idle_longer_than_zombie_idle() {
    let consumers = [
        consumer("zombie", 0, 5001),
        consumer("stuck", 2, 9000),
        consumer("young", 0, 100),
        consumer("borderline", 0, 5000),
        consumer("recovery", 0, 9000),
        consumer("quarantine", 3, 9000),
    ];
    let rules = DeleteRules {
        zombie_idle_ms: 5000,
        delete_limit: 10,
    };
    let plan = plan_deletions(&consumers, &rules, &keepers());
    assert_eq!(plan.delete, [b"zombie".to_vec()]);
    assert_eq!(plan.kept, [b"stuck".to_vec()]);
}

#[test]
fn delete_limit_caps_deletions_but_not_kept() {
    let consumers: Vec<_> = (0..5)
        .map(|i| consumer(&format!("z{i}"), i % 2, 9000))
        .collect();
    let rules = DeleteRules {
        zombie_idle_ms: 1,
        delete_limit: 2,
    };
    let plan = plan_deletions(&consumers, &rules, &keepers());
    assert_eq!(plan.delete, [b"z0".to_vec(), b"z2".to_vec()]);
    assert_eq!(plan.kept.len(), 2);
    assert_eq!(plan.kept_total, 2);
}

#[test]
fn kept_lists_at_most_kept_limit_names_and_counts_them_all() {
    let consumers: Vec<_> = (0..KEPT_LIMIT + 7)
        .map(|i| consumer(&format!("stuck{i}"), 1, 9000))
        .collect();
    let rules = DeleteRules {
        zombie_idle_ms: 1,
        delete_limit: 10,
    };
    let plan = plan_deletions(&consumers, &rules, &keepers());
    assert_eq!(plan.kept.len(), KEPT_LIMIT);
    assert_eq!(plan.kept_total, KEPT_LIMIT + 7);
    assert_eq!(plan.kept[0], b"stuck0".to_vec());
}

#[test]
fn a_keeper_is_created_even_when_every_entry_planned_for_it_is_gone() {
    let pel = [entry(1, "dead", 5000, 1)];
    let plan = plan_claims(pel.to_vec(), &rules(100, 1000), &keepers(), true);
    let outcome = ClaimOutcome::from_plan(plan.clone(), |_| true);
    let after =
        consumers_after_claims(vec![consumer("dead", 1, 9000)], &plan, &outcome, &keepers());
    assert_eq!(
        after,
        [consumer("dead", 0, 9000), consumer("recovery", 0, 0)]
    );
}

#[test]
fn simulated_claims_empty_the_owner_and_create_the_keepers() {
    let pel = [
        entry(1, "dead", 5000, 1),
        entry(2, "dead", 5000, 9),
        entry(3, "dead", 5000, 1),
    ];
    let rules = ClaimRules {
        max_deliveries: Some(5),
        ..rules(100, 1000)
    };
    let plan = plan_claims(pel.to_vec(), &rules, &keepers(), true);
    let outcome = ClaimOutcome::from_plan(plan.clone(), |id| id == "3-0");
    assert_eq!(outcome.claimed, ["1-0"]);
    assert_eq!(outcome.quarantined, ["2-0"]);
    assert_eq!(outcome.dropped, ["3-0"]);
    let after =
        consumers_after_claims(vec![consumer("dead", 3, 9000)], &plan, &outcome, &keepers());
    assert_eq!(
        after,
        [
            consumer("dead", 0, 9000),
            consumer("recovery", 1, 0),
            consumer("quarantine", 1, 0)
        ]
    );
}

fn arb_name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"recovery".to_vec()),
        Just(b"quarantine".to_vec()),
        Just(b"a".to_vec()),
        Just(b"b".to_vec()),
        Just(b"c".to_vec()),
    ]
}

prop_compose! {
    fn arb_pel()(rows in prop::collection::vec((arb_name(), 0i64..3000, 0i64..6), 0..60)) -> Vec<PendingEntry> {
        rows.into_iter().enumerate().map(|(i, (owner, idle_ms, deliveries))| PendingEntry {
            id: format!("{i}-0"), owner: owner.into(), idle_ms, deliveries,
        }).collect()
    }
}

proptest! {
    #[test]
    fn plans_respect_every_rule(
        pel in arb_pel(),
        min_idle_ms in 1i64..3000,
        count in 1usize..20,
        extra_scan in 0usize..50,
        max_deliveries in prop::option::of(1i64..6),
        zombie_idle_ms in 1i64..3000,
        delete_limit in 0usize..5,
        consumer_idle in prop::collection::vec(0i64..3000, 5),
        gone in prop::collection::hash_set(0usize..60, 0..10),
    ) {
        let keepers = keepers();
        let scan = count + extra_scan;
        let rules = ClaimRules { min_idle_ms, count, scan, max_deliveries };
        let page: Vec<_> = pel.iter().take(scan).cloned().collect();
        let plan = plan_claims(page.clone(), &rules, &keepers, pel.len() <= scan);
        if plan.cursor.is_none() {
            prop_assert!(plan.scanned == pel.len(), "claimed the end of the PEL before reaching it");
        }

        prop_assert!(plan.moves.len() <= count);
        prop_assert!(plan.scanned <= scan);
        for m in &plan.moves {
            let e = page.iter().find(|e| e.id == m.id).unwrap();
            prop_assert!(e.idle_ms >= min_idle_ms, "moved an entry idle < MINIDLE");
            prop_assert!(*e.owner != *keepers.to && *e.owner != *keepers.quarantine, "re-claimed a keeper's entry");
            let poisoned = max_deliveries.is_some_and(|max| e.deliveries >= max);
            prop_assert_eq!(m.destination == Destination::Quarantine, poisoned);
        }

        // Consumers consistent with the PEL, then the claims applied.
        let names = [&b"recovery"[..], b"quarantine", b"a", b"b", b"c"];
        let consumers: Vec<Consumer> = names.iter().zip(&consumer_idle).map(|(n, &idle_ms)| Consumer {
            name: n.to_vec(),
            pending: pel.iter().filter(|e| &*e.owner == *n).count() as i64,
            idle_ms,
        }).collect();
        let outcome = ClaimOutcome::from_plan(plan.clone(), |id| gone.contains(&id.split('-').next().unwrap().parse().unwrap()));
        let after = consumers_after_claims(consumers, &plan, &outcome, &keepers);
        let total: i64 = after.iter().map(|c| c.pending).sum();
        prop_assert_eq!(total, pel.len() as i64 - outcome.dropped.len() as i64, "an entry was lost");

        let deletions = plan_deletions(&after, &DeleteRules { zombie_idle_ms, delete_limit }, &keepers);
        prop_assert!(deletions.delete.len() <= delete_limit);
        for name in &deletions.delete {
            let c = after.iter().find(|c| &c.name == name).unwrap();
            prop_assert_eq!(c.pending, 0, "deleted a consumer holding entries");
            prop_assert!(c.idle_ms > zombie_idle_ms);
            prop_assert!(*name != keepers.to && *name != keepers.quarantine);
        }
    }
}
