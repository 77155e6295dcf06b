//! Checkpoints of the stacks in training, in `DIR/checkpoints/`:
//!
//!   part-NNNNN.step-SSSSSS.safetensors   the state of stack (part) N after S steps
//!   part-NNNNN.json                      its manifest: which state file is current, its
//!                                        size and checksum, the runs and the step
//!
//! A checkpoint is a snapshot of the state between two steps, written in the background while
//! training goes on ([`Writer`]). The state file is written first, then the manifest, each
//! through a temporary file, fsync and rename. The manifest's rename is the commit point; the state file it replaced is
//! removed only after it. A kill at any moment leaves the previous checkpoint or the new one
//! whole, and a bit flip or a truncation is caught by the size and checksum before any
//! tensor is read.

use crate::faults;
use crate::files::write_atomic;
use crate::state::{State, StateDict};
use crate::train::Training;
use anyhow::{anyhow, bail, Context, Result};
use candle_core::Device;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Instant;

pub const CHECKPOINT_DIR: &str = "checkpoints";
const FORMAT: u32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub part: usize,
    /// The state file, in the same folder.
    pub state: String,
    pub bytes: u64,
    /// [`checksum`] of the state file, hex.
    pub checksum: String,
    /// Optimizer steps taken; training goes on with this step (0-based).
    pub next_step: usize,
    pub epochs: usize,
    /// Every run of the stack as it was built, and those still training.
    pub run_ids: Vec<usize>,
    pub active_run_ids: Vec<usize>,
    /// Where the random state is: nothing is drawn after the start, so the seeds are all.
    pub random_state: String,
    pub grokstack_version: String,
}

/// The checkpoints of one output directory.
#[derive(Clone)]
pub struct Checkpoints {
    dir: PathBuf,
}

/// A stack's state at a step boundary, on the host: what a checkpoint writes. Tensors are
/// immutable (every step makes new ones), so on the CPU taking it copies nothing, and it can
/// be written while training goes on.
pub struct Snapshot {
    part: usize,
    state: State,
    next_step: usize,
    epochs: usize,
    run_ids: Vec<usize>,
    active_run_ids: Vec<usize>,
}

impl Snapshot {
    pub fn of(part: usize, training: &Training) -> Result<Snapshot> {
        let state = training
            .state()?
            .into_iter()
            .map(|(name, t)| Ok((name, t.to_device(&Device::Cpu)?)))
            .collect::<Result<State>>()?;
        Ok(Snapshot {
            part,
            state,
            next_step: training.next_step(),
            epochs: training.epochs(),
            run_ids: training.run_ids(),
            active_run_ids: training.active_run_ids(),
        })
    }
}

/// Writes checkpoints in a background thread, one at a time: training waits only for the
/// snapshot (and for the previous write, if a checkpoint is due before it ended). With a
/// fault configured (the crash tests), writes happen in order on the calling thread, so that
/// fault points are reached at predictable steps.
pub struct Writer {
    checkpoints: Checkpoints,
    in_flight: Option<JoinHandle<Result<Manifest>>>,
    /// Seconds the training thread spent on checkpoints (snapshots and waits).
    pub blocked_seconds: f64,
    pub written: usize,
}

impl Writer {
    pub fn new(checkpoints: Checkpoints) -> Writer {
        Writer { checkpoints, in_flight: None, blocked_seconds: 0.0, written: 0 }
    }

    /// Checkpoint `training` as part `part`.
    pub fn save(&mut self, part: usize, training: &Training) -> Result<()> {
        let start = Instant::now();
        self.wait()?;
        let snapshot = Snapshot::of(part, training)?;
        if faults::configured_any() {
            self.checkpoints.write(snapshot)?;
        } else {
            let checkpoints = self.checkpoints.clone();
            self.in_flight = Some(std::thread::spawn(move || checkpoints.write(snapshot)));
        }
        self.written += 1;
        self.blocked_seconds += start.elapsed().as_secs_f64();
        Ok(())
    }

    /// Wait for the write in flight, if any; its error, if it failed.
    pub fn wait(&mut self) -> Result<()> {
        let Some(handle) = self.in_flight.take() else { return Ok(()) };
        let start = Instant::now();
        let result = handle.join().map_err(|_| anyhow!("the checkpoint writer panicked"))?;
        self.blocked_seconds += start.elapsed().as_secs_f64();
        result.map(|_| ())
    }
}

impl Checkpoints {
    pub fn new(root: &Path) -> Checkpoints {
        Checkpoints { dir: root.join(CHECKPOINT_DIR) }
    }

    pub fn manifest_path(&self, part: usize) -> PathBuf {
        self.dir.join(format!("part-{part:05}.json"))
    }

    fn state_prefix(part: usize) -> String {
        format!("part-{part:05}.step-")
    }

    /// Write the state of `training` (stack `part`) as the current checkpoint of that part.
    pub fn save(&self, part: usize, training: &Training) -> Result<Manifest> {
        self.write(Snapshot::of(part, training)?)
    }

    /// Write a snapshot: the state file, then the manifest that commits it, then remove the
    /// state it replaced.
    pub fn write(&self, snapshot: Snapshot) -> Result<Manifest> {
        let Snapshot { part, state, next_step, epochs, run_ids, active_run_ids } = snapshot;
        fs::create_dir_all(&self.dir).with_context(|| format!("cannot create {}", self.dir.display()))?;
        let bytes = safetensors::tensor::serialize(state.iter().map(|(name, t)| (name.as_str(), t)), None)
            .map_err(|e| anyhow!("cannot serialize the checkpoint of part {part}: {e}"))?;
        drop(state);
        let name = format!("{}{next_step:06}.safetensors", Self::state_prefix(part));
        write_atomic(&self.dir.join(&name), |f| Ok(f.write_all(&bytes)?))?;
        let manifest = Manifest {
            format: FORMAT,
            part,
            state: name.clone(),
            bytes: bytes.len() as u64,
            checksum: format!("{:016x}", checksum(&bytes)),
            next_step,
            epochs,
            run_ids,
            active_run_ids,
            random_state: "none: data splits, initial weights and power-iteration start vectors are pure functions of \
                each run's seed"
                .into(),
            grokstack_version: env!("CARGO_PKG_VERSION").into(),
        };
        let json = serde_json::to_string_pretty(&manifest)?;
        write_atomic(&self.manifest_path(part), |f| Ok(f.write_all(json.as_bytes())?))?;
        self.remove_states(part, Some(&name))?;
        Ok(manifest)
    }

    /// The manifest of part `part`, checked against the stack's runs; `None` without one.
    pub fn manifest(&self, part: usize, run_ids: &[usize]) -> Result<Option<Manifest>> {
        let path = self.manifest_path(part);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read checkpoint manifest {}", path.display())),
        };
        let hint = || format!("delete {} to train part {part} again from its first epoch", path.display());
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| anyhow!("checkpoint manifest {} is corrupted ({e}); {}", path.display(), hint()))?;
        let expected_prefix = Self::state_prefix(part);
        let valid_name = manifest.state.starts_with(&expected_prefix)
            && manifest.state.ends_with(".safetensors")
            && !manifest.state.contains(['/', '\\']);
        if manifest.format != FORMAT || manifest.part != part || !valid_name {
            bail!(
                "checkpoint manifest {} is not a format-{FORMAT} manifest of part {part}; {}",
                path.display(),
                hint()
            );
        }
        if manifest.run_ids != run_ids {
            bail!(
                "checkpoint manifest {} is for runs {:?}, but part {part} of this sweep has runs {:?}; {}",
                path.display(),
                manifest.run_ids,
                run_ids,
                hint()
            );
        }
        Ok(Some(manifest))
    }

    /// The state file a manifest names, with its size and checksum verified.
    fn read_state(&self, manifest: &Manifest) -> Result<(PathBuf, Vec<u8>)> {
        let path = self.dir.join(&manifest.state);
        let hint = format!(
            "delete it and {} to train part {} again from its first epoch",
            self.manifest_path(manifest.part).display(),
            manifest.part
        );
        let bytes = fs::read(&path).with_context(|| format!("cannot read checkpoint {} ({hint})", path.display()))?;
        if bytes.len() as u64 != manifest.bytes {
            bail!(
                "checkpoint {} is truncated or corrupted: {} bytes, its manifest says {}; {hint}",
                path.display(),
                bytes.len(),
                manifest.bytes
            );
        }
        if format!("{:016x}", checksum(&bytes)) != manifest.checksum {
            bail!("checkpoint {} is corrupted: its checksum does not match its manifest's; {hint}", path.display());
        }
        Ok((path, bytes))
    }

    /// Check part `part`'s checkpoint (if any) without loading it: manifest, size, checksum.
    pub fn verify(&self, part: usize, run_ids: &[usize]) -> Result<Option<Manifest>> {
        let Some(manifest) = self.manifest(part, run_ids)? else { return Ok(None) };
        self.read_state(&manifest)?;
        Ok(Some(manifest))
    }

    /// The checkpoint of part `part` (on the CPU), if there is one.
    pub fn load(&self, part: usize, run_ids: &[usize]) -> Result<Option<(Manifest, PathBuf, StateDict)>> {
        let Some(manifest) = self.manifest(part, run_ids)? else { return Ok(None) };
        let (path, bytes) = self.read_state(&manifest)?;
        let state = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .map_err(|e| anyhow!("checkpoint {} is corrupted: {e}", path.display()))?;
        Ok(Some((manifest, path, state)))
    }

    /// Remove part `part`'s checkpoint once its results are on disk: the manifest first, so
    /// that no manifest ever names a missing state.
    pub fn remove(&self, part: usize) -> Result<()> {
        let manifest = self.manifest_path(part);
        match fs::remove_file(&manifest) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", manifest.display())),
        }
        self.remove_states(part, None)?;
        // The folder goes when the last stack is done; other parts' files keep it.
        let _ = fs::remove_dir(&self.dir);
        Ok(())
    }

    /// Remove the state files of `part` other than `keep` (left by a kill between a state's
    /// rename and its manifest's, or replaced by a newer checkpoint).
    pub fn remove_states(&self, part: usize, keep: Option<&str>) -> Result<()> {
        let Ok(entries) = fs::read_dir(&self.dir) else { return Ok(()) };
        let prefix = Self::state_prefix(part);
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) && name.ends_with(".safetensors") && Some(name.as_str()) != keep {
                fs::remove_file(entry.path()).with_context(|| format!("cannot remove {}", entry.path().display()))?;
            }
        }
        Ok(())
    }
}

/// A 64-bit checksum of `bytes` (not cryptographic: it catches truncation and bit rot).
/// Blocks of 1 MiB are hashed in parallel and their hashes hashed again, so the result does
/// not depend on the thread count.
pub fn checksum(bytes: &[u8]) -> u64 {
    const BLOCK: usize = 1 << 20;
    let blocks: Vec<u64> = bytes.par_chunks(BLOCK).map(hash_block).collect();
    let words: Vec<u8> = blocks.iter().flat_map(|h| h.to_le_bytes()).collect();
    hash_block(&words) ^ (bytes.len() as u64).rotate_left(32)
}

/// Four independent multiply-xorshift lanes over 8-byte words (for instruction-level
/// parallelism), folded at the end; the tail is zero-padded.
fn hash_block(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut lanes = [K, K.rotate_left(16), K.rotate_left(32), K.rotate_left(48)];
    let mut chunks = bytes.chunks_exact(32);
    for chunk in &mut chunks {
        for (lane, word) in lanes.iter_mut().zip(chunk.chunks_exact(8)) {
            let w = u64::from_le_bytes(word.try_into().expect("8-byte chunk"));
            *lane = (*lane ^ w).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
            *lane ^= *lane >> 31;
        }
    }
    let mut tail = [0u8; 32];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    let mut h = bytes.len() as u64;
    for (lane, word) in lanes.iter().zip(tail.chunks_exact(8)) {
        let w = u64::from_le_bytes(word.try_into().expect("8-byte chunk"));
        h = (h ^ lane.wrapping_add(w)).wrapping_mul(0xC4CE_B9FE_1A85_EC53);
        h ^= h >> 29;
    }
    h
}
