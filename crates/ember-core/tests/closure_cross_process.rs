//! The proof that closure shipping works across processes: a `TaskFn` encoded here is decoded and
//! run by a second run of this same test binary, which the loader places at a different address
//! (ASLR/PIE), exactly as an executor runs the driver's binary.
//!
//! The parent test re-executes `std::env::current_exe()` with `--exact child_executor_role` and
//! an environment variable naming the file with the task bytes; in an ordinary test run
//! `child_executor_role` finds no such variable and returns at once.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use ember_core::closure::{ShipAs, ShippedBox, TaskFn, binary_digest};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_closure::Fn;

/// Names the file holding the encoded task; set only for the child.
const TASK_FILE_ENV: &str = "EMBER_CLOSURE_TEST_TASK_FILE";
/// How many partitions the child runs.
const PARTITIONS: usize = 4;
/// Deadline for the child to finish; it normally takes milliseconds.
const CHILD_DEADLINE: Duration = Duration::from_secs(60);

/// A trait object defined downstream of ember-core, shipped inside the task closure.
trait Scale: Send + Sync {
    fn scale(&self, x: u64) -> u64;
}

impl<T: Scale + Serialize + DeserializeOwned + 'static> ShipAs<T> for dyn Scale {
    fn upcast(value: Box<T>) -> Box<Self> {
        value
    }
}

#[derive(Serialize, Deserialize)]
struct Times(u64);

impl Scale for Times {
    fn scale(&self, x: u64) -> u64 {
        x * self.0
    }
}

fn address_of_this_function() -> usize {
    let f: fn() -> usize = address_of_this_function;
    (f as *const ()).addr()
}

/// Kills and reaps the child if the test fails before the child exits.
struct ChildGuard(Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Removes the task file however the test ends.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs only as the child: decodes the task from the file and prints one line per partition.
#[test]
fn child_executor_role() {
    let Some(path) = std::env::var_os(TASK_FILE_ENV) else {
        return;
    };
    let bytes = std::fs::read(path).expect("read task file");
    println!("ADDRESS {:x}", address_of_this_function());
    println!("DIGEST {}", binary_digest().expect("digest"));
    match TaskFn::from_bytes(&bytes) {
        Ok(task) => {
            println!("CONCRETE {}", task.concrete_type());
            for partition in 0..PARTITIONS {
                let output = task.run(partition).expect("run task");
                println!("RESULT {partition} {}", hex(&output));
            }
        }
        Err(e) => println!("REFUSED {e}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Runs the child on `bytes` and returns its stdout.
fn run_child(name: &str, bytes: &[u8]) -> String {
    let file = TempFile(std::env::temp_dir().join(format!(
        "ember-closure-task-{}-{name}.bin",
        std::process::id()
    )));
    std::fs::write(&file.0, bytes).expect("write task file");
    let child = Command::new(std::env::current_exe().expect("current exe"))
        .args([
            "--exact",
            "child_executor_role",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(TASK_FILE_ENV, &file.0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let mut guard = ChildGuard(Some(child));
    let mut stdout = guard.0.as_mut().unwrap().stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = String::new();
        let read = stdout.read_to_string(&mut out).map(|_| out);
        let _ = tx.send(read);
    });
    // Poll with a deadline: if the child hangs, this panics and the guard kills it.
    let out = rx
        .recv_timeout(CHILD_DEADLINE)
        .expect("child did not finish before the deadline")
        .expect("read child stdout");
    let status = guard.0.take().unwrap().wait().expect("wait for child");
    assert!(
        status.success(),
        "child failed with {status}; output:\n{out}"
    );
    out
}

fn lines_with<'a>(out: &'a str, tag: &str) -> Vec<&'a str> {
    out.lines()
        .filter_map(|line| line.strip_prefix(tag)?.strip_prefix(' '))
        .collect()
}

#[test]
fn a_task_fn_runs_in_another_process_of_the_same_binary() {
    let words: Vec<String> = ["zero", "one", "two", "three"].map(String::from).to_vec();
    let weights: Vec<u64> = vec![2, 3, 5, 7];
    let scale: ShippedBox<dyn Scale> = ShippedBox::new(Times(10)).unwrap();
    let (task, decoder) = TaskFn::new(Fn!(move |partition: usize| {
        (words[partition].clone(), scale.scale(weights[partition]))
    }))
    .unwrap();
    let out = run_child("ok", &task.to_bytes().unwrap());

    let results = lines_with(&out, "RESULT");
    assert_eq!(results.len(), PARTITIONS, "child output:\n{out}");
    for line in results {
        let (partition, encoded) = line.split_once(' ').unwrap();
        let partition: usize = partition.parse().unwrap();
        let value = decoder.decode(&unhex(encoded)).unwrap();
        assert_eq!(value, task_expectation(partition));
        assert_eq!(unhex(encoded), task.run(partition).unwrap());
    }
    assert_eq!(
        lines_with(&out, "DIGEST"),
        [binary_digest().unwrap().to_string()]
    );
    assert_eq!(lines_with(&out, "CONCRETE"), [task.concrete_type()]);
    let child_address = lines_with(&out, "ADDRESS");
    let ours = format!("{:x}", address_of_this_function());
    if child_address == [ours.as_str()] {
        // Not a failure: ASLR may be disabled (e.g. under `setarch -R` or a debugger).
        eprintln!("note: the child was loaded at the same address; ASLR seems to be off");
    }
}

fn task_expectation(partition: usize) -> (String, u64) {
    let words = ["zero", "one", "two", "three"];
    let weights = [2u64, 3, 5, 7];
    (words[partition].to_string(), weights[partition] * 10)
}

#[test]
fn another_process_refuses_a_corrupted_task_without_calling_it() {
    let (task, _) = TaskFn::new(Fn!(|partition: usize| partition)).unwrap();
    let mut bytes = task.to_bytes().unwrap();
    // The first byte belongs to the code-pointer offset, which the seal covers.
    bytes[0] ^= 0x04;
    let out = run_child("corrupt", &bytes);
    let refused = lines_with(&out, "REFUSED");
    assert_eq!(refused.len(), 1, "child output:\n{out}");
    assert!(lines_with(&out, "RESULT").is_empty());
    let local = TaskFn::from_bytes(&bytes).unwrap_err();
    assert!(local.is_binary_mismatch(), "{local:?}");
    assert_eq!(refused[0], local.to_string());
}
