//! The device a command trains on, from its `--device` text.

use anyhow::{bail, Context, Result};
use candle_core::Device;

/// Parse `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        _ => {
            let ordinal = match name.strip_prefix("cuda") {
                Some("") => 0,
                Some(rest) => rest
                    .strip_prefix(':')
                    .and_then(|n| n.parse().ok())
                    .with_context(|| format!("--device {name}: expected cpu, cuda or cuda:N"))?,
                None => bail!("--device {name}: expected cpu, cuda or cuda:N"),
            };
            if !candle_core::utils::cuda_is_available() {
                bail!("--device {name}: this grokstack was built without CUDA (build it with `make cuda`)");
            }
            // candle's error carries a backtrace after its first line; the cause is that line.
            Device::new_cuda(ordinal).map_err(|e| {
                let cause = e.to_string();
                anyhow::anyhow!("--device {name}: no CUDA device found ({})", cause.lines().next().unwrap_or_default())
            })
        }
    }
}
