// Rust's std threads, statically linked (+crt-static): channels, a Mutex, thread::scope, a panic
// caught at join. With argument `overflow`, main recurses until its stack overflows: Rust's handler
// (SIGSEGV on an alternate stack) prints its message and aborts.
use std::sync::{mpsc, Arc, Mutex};
use std::thread;

fn recurse(n: u64, buf: &mut [u8; 4096]) -> u64 {
    buf[(n % 4096) as usize] = n as u8;
    let mut next = [0u8; 4096];
    if n == u64::MAX { return 0; }
    recurse(n + 1, &mut next) + buf[0] as u64
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("overflow") {
        let mut buf = [0u8; 4096];
        println!("{}", recurse(0, &mut buf));
        return;
    }
    let (tx, rx) = mpsc::channel();
    let counter = Arc::new(Mutex::new(0u64));
    let mut handles = vec![];
    for i in 0..8u64 {
        let tx = tx.clone();
        let counter = Arc::clone(&counter);
        handles.push(thread::spawn(move || {
            for j in 0..1000 {
                *counter.lock().unwrap() += 1;
                if j == 999 { tx.send(i * i).unwrap(); }
            }
        }));
    }
    drop(tx);
    for h in handles { h.join().unwrap(); }
    let total: u64 = rx.iter().sum();
    println!("channel sum {} counter {}", total, *counter.lock().unwrap());
    let mut data = vec![1u64, 2, 3, 4, 5, 6];
    thread::scope(|s| {
        for chunk in data.chunks_mut(2) {
            s.spawn(move || { for x in chunk.iter_mut() { *x *= 10; } });
        }
    });
    println!("scoped {:?}", data);
    let r = thread::Builder::new().name("worker".into()).spawn(|| -> u32 { panic!("boom in a thread") }).unwrap().join();
    println!("caught panic: {}", r.is_err());
}
