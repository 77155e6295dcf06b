//! The GPU against the CPU: the same small stack trained 20 epochs on both. Skipped, saying
//! why, where no CUDA device can be opened (every CPU-only build, and CI).

mod common;

use candle_core::{DType, Device};
use grokstack::train::Stack;

/// The CUDA device, or the reason there is none.
fn cuda() -> Result<Device, String> {
    grokstack::runner::parse_device("cuda").map_err(|e| format!("{e:#}"))
}

#[test]
fn gpu_and_cpu_agree_on_a_small_stack() {
    let gpu = match cuda() {
        Ok(device) => device,
        Err(why) => {
            eprintln!("skipped, no GPU: {why}");
            return;
        }
    };
    let runs = common::runs(common::TINY, &["seeds=4", "task.p=23", "train.lr=[0.003, 0.01]"]);
    let mut on_cpu = Stack::new(runs.clone(), &Device::Cpu).unwrap();
    let mut on_gpu = Stack::new(runs, &gpu).unwrap();
    for epoch in 0..20 {
        let (cpu_train, gpu_train) = (on_cpu.step().unwrap(), on_gpu.step().unwrap());
        let cpu_test = on_cpu.evaluate(&on_cpu.test).unwrap();
        let gpu_test = on_gpu.evaluate(&on_gpu.test).unwrap();
        for (what, cpu, gpu) in [("train", cpu_train, gpu_train), ("test", cpu_test, gpu_test)] {
            let cpu: Vec<f64> = cpu.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let gpu: Vec<f64> = gpu.to_device(&Device::Cpu).unwrap().to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let diff = cpu.iter().zip(&gpu).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(diff < 1e-4, "epoch {epoch}, {what} metrics: CPU {cpu:?} vs GPU {gpu:?}");
        }
    }
}

#[test]
fn a_cpu_build_names_the_missing_backend() {
    if cfg!(feature = "cuda") {
        eprintln!("skipped: this is the CUDA build");
        return;
    }
    let why = cuda().expect_err("a CPU build cannot open CUDA");
    assert!(why.contains("built without CUDA") && why.contains("make cuda"), "{why}");
}
