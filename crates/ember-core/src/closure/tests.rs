//! Tests of shipping through bytes within one process (cross-process: `tests/closure_*.rs`).

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_closure::Fn;

use super::shipped::Wire;
use super::*;

trait Stage: Send + Sync {
    fn apply(&self, x: i64) -> i64;
}

impl<T: Stage + Serialize + DeserializeOwned + 'static> ShipAs<T> for dyn Stage {
    fn upcast(value: Box<T>) -> Box<Self> {
        value
    }
}

#[derive(Serialize, Deserialize)]
struct Add(i64);

impl Stage for Add {
    fn apply(&self, x: i64) -> i64 {
        x + self.0
    }
}

/// A stage that contains other shipped stages.
#[derive(Serialize, Deserialize)]
struct Pipeline {
    name: String,
    stages: Vec<ShippedBox<dyn Stage>>,
}

impl Stage for Pipeline {
    fn apply(&self, x: i64) -> i64 {
        self.stages.iter().fold(x, |acc, stage| stage.apply(acc))
    }
}

fn add(n: i64) -> ShippedBox<dyn Stage> {
    ShippedBox::new(Add(n)).unwrap()
}

#[test]
fn task_fn_round_trips_a_capturing_closure() {
    let numbers: Vec<u32> = vec![3, 1, 4, 1, 5];
    let label = String::from("partition");
    let (task, decoder) = TaskFn::new(Fn!(move |p: usize| {
        // Not `format!("{label}-{p}")`: serde_closure cannot see captures inside format strings.
        (format!("{}-{}", label, p), numbers[p] * 2)
    }))
    .unwrap();
    let bytes = task.to_bytes().unwrap();
    let decoded = TaskFn::from_bytes(&bytes).unwrap();
    assert_eq!(decoded.concrete_type(), task.concrete_type());
    for p in 0..5 {
        let out = decoded.run(p).unwrap();
        let expected = (format!("partition-{p}"), [3, 1, 4, 1, 5][p] * 2);
        assert_eq!(decoder.decode(&out).unwrap(), expected);
        assert_eq!(out, task.run(p).unwrap(), "driver and decoded copy agree");
    }
}

#[test]
fn shipped_values_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<TaskFn>();
    assert_send_sync::<ShippedBox<dyn Stage>>();
    assert_send_sync::<ClosureError>();
    assert_send_sync::<ResultDecoder<std::rc::Rc<u8>>>();
}

#[test]
fn a_task_fn_runs_concurrently_from_many_threads() {
    let table: Vec<u64> = (0..64).map(|i| i * i).collect();
    let (task, decoder) = TaskFn::new(Fn!(move |p: usize| table[p] + 1)).unwrap();
    let task = TaskFn::from_bytes(&task.to_bytes().unwrap()).unwrap();
    std::thread::scope(|scope| {
        for t in 0..4 {
            let task = &task;
            scope.spawn(move || {
                for p in (t..64).step_by(4) {
                    let out = task.run(p).unwrap();
                    assert_eq!(decoder.decode(&out).unwrap(), (p * p) as u64 + 1);
                }
            });
        }
    });
}

#[test]
fn task_fn_is_a_serde_field() {
    #[derive(Serialize, Deserialize)]
    struct LaunchTask {
        task_id: u64,
        func: TaskFn,
    }
    let base = 100usize;
    let (func, decoder) = TaskFn::new(Fn!(move |p: usize| base + p)).unwrap();
    let bytes = postcard::to_allocvec(&LaunchTask { task_id: 7, func }).unwrap();
    let launch: LaunchTask = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(launch.task_id, 7);
    assert_eq!(decoder.decode(&launch.func.run(5).unwrap()).unwrap(), 105);
}

#[test]
fn results_that_do_not_decode_are_errors() {
    let (task, _) = TaskFn::new(Fn!(|p: usize| p as u8)).unwrap();
    let out = task.run(200).unwrap();
    let wrong = ResultDecoder::<String>::new();
    assert!(matches!(
        wrong.decode(&out),
        Err(ClosureError::Decode { .. })
    ));
    let right = ResultDecoder::<u8>::new();
    let mut longer = out.clone();
    longer.push(0);
    assert!(matches!(
        right.decode(&longer),
        Err(ClosureError::Decode { .. })
    ));
}

#[test]
fn nested_shipped_boxes_round_trip() {
    let inner = Pipeline {
        name: "inner".into(),
        stages: vec![add(1), add(10)],
    };
    let inner: ShippedBox<dyn Stage> = ShippedBox::new(inner).unwrap();
    let outer = Pipeline {
        name: "outer".into(),
        stages: vec![inner, add(100)],
    };
    let outer: ShippedBox<dyn Stage> = ShippedBox::new(outer).unwrap();
    assert_eq!(outer.apply(0), 111);
    let back = ShippedBox::<dyn Stage>::from_bytes(&outer.to_bytes().unwrap()).unwrap();
    assert_eq!(back.apply(1), 112);
    assert!(back.concrete_type().ends_with("Pipeline"));
    // Re-encoding a decoded box gives the same bytes.
    assert_eq!(back.to_bytes().unwrap(), outer.to_bytes().unwrap());
}

#[test]
fn clones_share_and_owned_copies_are_fresh() {
    #[derive(Serialize, Deserialize)]
    struct Counter {
        #[serde(skip)]
        calls: AtomicUsize,
        start: usize,
    }
    let shipped: ShippedBox<dyn Any + Send + Sync> = ShippedBox::new(Counter {
        calls: AtomicUsize::new(0),
        start: 5,
    })
    .unwrap();
    let counter = |b: &(dyn Any + Send + Sync)| -> usize {
        let c = b.downcast_ref::<Counter>().unwrap();
        c.calls.fetch_add(1, Ordering::SeqCst) + c.start
    };
    let clone = shipped.clone();
    assert_eq!(counter(&*shipped), 5);
    assert_eq!(counter(&*clone), 6, "clones share the value");
    assert!(Arc::ptr_eq(&shipped.shared(), &clone.shared()));
    let owned = shipped.decode_owned().unwrap();
    assert_eq!(counter(&*owned), 5, "decode_owned is a fresh copy");
}

#[test]
fn unserializable_values_fail_where_they_are_made() {
    struct Opaque;
    impl Serialize for Opaque {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("sockets cannot be shipped"))
        }
    }
    impl<'de> Deserialize<'de> for Opaque {
        fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
            Ok(Opaque)
        }
    }
    let err = ShippedBox::<dyn Any + Send + Sync>::new(Opaque).unwrap_err();
    assert!(matches!(err, ClosureError::Encode { .. }), "{err}");
    assert!(err.to_string().contains("Opaque"), "{err}");
}

fn encoded_wire(task: &TaskFn) -> Wire {
    task.shipped().wire().clone()
}

fn encode_wire(wire: &Wire) -> Vec<u8> {
    postcard::to_allocvec(wire).unwrap()
}

#[test]
fn a_tampered_type_check_is_refused_by_the_seal() {
    let (task, _) = TaskFn::new(Fn!(|p: usize| p)).unwrap();
    let mut wire = encoded_wire(&task);
    wire.type_check ^= 1;
    let err = TaskFn::from_bytes(&encode_wire(&wire)).unwrap_err();
    assert!(matches!(err, ClosureError::SealMismatch { .. }), "{err:?}");
    assert!(err.is_binary_mismatch());
}

#[test]
fn a_resealed_wrong_type_check_is_refused_by_the_trampoline() {
    // Simulates a seal collision: the pointer and seal are fine, the type check is not.
    let (task, _) = TaskFn::new(Fn!(|p: usize| p)).unwrap();
    let mut wire = encoded_wire(&task);
    let original = wire.type_check;
    wire.type_check = original.wrapping_add(1);
    wire.reseal::<dyn TaskBody>();
    let err = TaskFn::from_bytes(&encode_wire(&wire)).unwrap_err();
    assert_eq!(
        err,
        ClosureError::TypeMismatch {
            what: err_what(&err),
            expected_hash: original,
            found_hash: original.wrapping_add(1),
        }
    );
}

fn err_what(err: &ClosureError) -> &'static str {
    match err {
        ClosureError::TypeMismatch { what, .. } => what,
        other => panic!("not a type mismatch: {other:?}"),
    }
}

#[test]
fn an_entry_decoded_as_another_trait_object_is_refused() {
    let stage = add(1);
    let bytes = stage.to_bytes().unwrap();
    let err = ShippedBox::<dyn Any + Send + Sync>::from_bytes(&bytes).unwrap_err();
    assert!(matches!(err, ClosureError::SealMismatch { .. }), "{err:?}");
    let err = TaskFn::from_bytes(&bytes).unwrap_err();
    assert!(matches!(err, ClosureError::SealMismatch { .. }), "{err:?}");
}

#[test]
fn absurd_offsets_are_refused_even_with_a_valid_seal() {
    let (task, _) = TaskFn::new(Fn!(|p: usize| p)).unwrap();
    for offset in [i64::MIN, -1, 0, 1 << 40, i64::MAX] {
        let mut wire = encoded_wire(&task);
        wire.ptr = super::rel_ptr::RelFnPtr::from_offset(offset);
        wire.reseal::<dyn TaskBody>();
        let err = TaskFn::from_bytes(&encode_wire(&wire)).unwrap_err();
        assert_eq!(err, ClosureError::BadPointer { offset });
    }
}

#[test]
fn a_corrupted_nested_entry_is_named_as_the_cause() {
    let outer: ShippedBox<dyn Stage> = ShippedBox::new(Pipeline {
        name: "p".into(),
        stages: vec![add(1)],
    })
    .unwrap();
    // Rebuild the outer payload (`Pipeline` encodes as `(name, [entry])`) with a broken inner
    // seal; the outer seal does not cover the payload, so the outer entry still opens.
    let mut inner = add(1).wire().clone();
    inner.seal ^= 1;
    let mut wire = outer.wire().clone();
    wire.payload.0 = postcard::to_allocvec(&("p", vec![inner])).unwrap();
    let err = ShippedBox::<dyn Stage>::from_bytes(&encode_wire(&wire)).unwrap_err();
    match &err {
        ClosureError::Nested { what, source } => {
            assert!(what.ends_with("Pipeline"), "{what}");
            assert!(
                matches!(**source, ClosureError::SealMismatch { .. }),
                "{source:?}"
            );
        }
        other => panic!("expected a nested error, got {other:?}"),
    }
    assert!(err.is_binary_mismatch());
    assert!(
        err.to_string().contains("not sealed by this binary"),
        "{err}"
    );
    // The next, unrelated decode does not inherit the cause.
    let err = TaskFn::from_bytes(&[1, 2, 3]).unwrap_err();
    assert!(matches!(err, ClosureError::Decode { .. }), "{err:?}");
}

#[test]
fn flipping_any_payload_byte_of_a_nested_entry_never_panics() {
    let outer: ShippedBox<dyn Stage> = ShippedBox::new(Pipeline {
        name: "pipeline".into(),
        stages: vec![add(1), add(2)],
    })
    .unwrap();
    let mut wire = outer.wire().clone();
    for i in 0..wire.payload.0.len() {
        for flip in [0x01, 0x80, 0xff] {
            wire.payload.0[i] ^= flip;
            if let Ok(decoded) = ShippedBox::<dyn Stage>::from_bytes(&encode_wire(&wire)) {
                let _ = decoded.apply(0);
            }
            wire.payload.0[i] ^= flip;
        }
    }
}

fn sample_task_bytes() -> Vec<u8> {
    let (task, _) = TaskFn::new(Fn!(|p: usize| p.wrapping_mul(3))).unwrap();
    task.to_bytes().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_decode_into_a_call(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
        // A call would show as `TypeMismatch` (the trampoline's check) or success; only the
        // checks made before any call may fail here.
        let refused_before_call =
            |e: &ClosureError| matches!(e, ClosureError::Decode { .. } | ClosureError::SealMismatch { .. });
        let err = TaskFn::from_bytes(&bytes).unwrap_err();
        prop_assert!(refused_before_call(&err), "{:?}", err);
        let err = ShippedBox::<dyn Stage>::from_bytes(&bytes).unwrap_err();
        prop_assert!(refused_before_call(&err), "{:?}", err);
        let err = ShippedBox::<dyn Any + Send + Sync>::from_bytes(&bytes).unwrap_err();
        prop_assert!(refused_before_call(&err), "{:?}", err);
    }

    #[test]
    fn arbitrary_entries_never_decode_into_a_call(
        offset in any::<i64>(),
        type_check in any::<u64>(),
        seal in any::<u64>(),
        payload in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
        let wire = Wire {
            ptr: super::rel_ptr::RelFnPtr::from_offset(offset),
            type_check,
            seal,
            payload: super::shipped::Payload(payload),
        };
        let bytes = encode_wire(&wire);
        // Well-formed but unsealed: refused by the seal, before the pointer is touched.
        let err = TaskFn::from_bytes(&bytes).unwrap_err();
        prop_assert!(matches!(err, ClosureError::SealMismatch { .. }), "{:?}", err);
        let err = ShippedBox::<dyn Stage>::from_bytes(&bytes).unwrap_err();
        prop_assert!(matches!(err, ClosureError::SealMismatch { .. }), "{:?}", err);
    }

    #[test]
    fn corrupting_the_header_of_a_real_task_is_refused(index in 0usize..64, flip in 1u8..=255) {
        let bytes = sample_task_bytes();
        let wire: Wire = postcard::from_bytes(&bytes).unwrap();
        let header_len = bytes.len() - postcard::to_allocvec(&wire.payload).unwrap().len();
        let mut corrupted = bytes.clone();
        corrupted[index % header_len] ^= flip;
        prop_assert!(TaskFn::from_bytes(&corrupted).is_err());
    }

    #[test]
    fn corrupting_any_byte_of_a_real_task_never_panics(index in 0usize..64, flip in 1u8..=255) {
        let mut bytes = sample_task_bytes();
        let index = index % bytes.len();
        bytes[index] ^= flip;
        if let Ok(task) = TaskFn::from_bytes(&bytes) {
            // Only the payload can have changed; the closure still runs.
            let _ = task.run(1);
        }
    }
}
