//! settings.md: the headline (what a user reads first, also printed by the
//! CLI), the sweep's constant configuration and the per-setting table.

use std::path::Path;

use anyhow::{Context, Result};
use polars::prelude::{col, AnyValue, DataFrame, IntoLazy, SortMultipleOptions};

use crate::columns::*;
use crate::grok_rule::GrokCriterion;
use crate::tables::{format_value, markdown_table};

pub(crate) struct Summary<'a> {
    pub dir: &'a Path,
    pub grok: GrokCriterion,
    pub runs: &'a DataFrame,
    pub settings: &'a DataFrame,
    pub config: &'a [String],
    pub varying: &'a [String],
    pub missing_runs: usize,
    pub skipped_runs: usize,
}

impl Summary<'_> {
    pub fn headline(&self) -> Result<String> {
        let diverged = self.runs.column(DIVERGED)?.bool()?.num_trues();
        let qualified = self.settings.column(QUALIFIED)?.bool()?.num_trues();
        let missing = if self.missing_runs == 0 {
            "no runs missing".to_string()
        } else {
            format!("{} runs still missing (sweep unfinished: results are provisional)", self.missing_runs)
        };
        let skipped = if self.skipped_runs == 0 {
            String::new()
        } else {
            let partial = self.settings.column(PARTIAL)?.bool()?.num_trues();
            format!(
                "\n{} runs skipped by seed waves: {partial} settings had a seed that did not grok and trained \
                 no more seeds; their statistics are over the runs that trained (`partial`).",
                self.skipped_runs
            )
        };
        let mut text = format!(
            "grokstack analysis of {} ({})\n\
             {} runs in {} settings; {missing}; {diverged} runs diverged.{skipped}\n\
             {qualified} of {} settings qualified (every seed trained and grokked within its epoch budget).",
            self.dir.display(),
            self.grok.meaning(),
            self.runs.height(),
            self.settings.height(),
            self.settings.height(),
        );
        for line in self.fastest_per_task()? {
            text.push('\n');
            text.push_str(&line);
        }
        Ok(text)
    }

    /// "Fastest qualified setting for add: #17 (train.lr=0.01, ...): median 123 (IQR 110–140)".
    fn fastest_per_task(&self) -> Result<Vec<String>> {
        let described: Vec<&str> = self.varying.iter().map(String::as_str).filter(|c| *c != TASK_OP).collect();
        let shown: Vec<&str> = [SETTING_ID, MEDIAN_GROK_EPOCH, Q25_GROK_EPOCH, Q75_GROK_EPOCH, MEDIAN_LIPSCHITZ]
            .into_iter()
            .chain(described.iter().copied())
            .collect();
        let fastest = self
            .settings
            .clone()
            .lazy()
            .filter(col(QUALIFIED))
            .group_by([col(TASK_OP)])
            .agg(
                shown
                    .iter()
                    .map(|c| {
                        col(*c)
                            .sort_by([col(MEDIAN_GROK_EPOCH), col(SETTING_ID)], SortMultipleOptions::default())
                            .first()
                    })
                    .collect::<Vec<_>>(),
            )
            .sort([TASK_OP], SortMultipleOptions::default())
            .collect()
            .context("finding the fastest qualified setting per task")?;

        let mut lines = Vec::new();
        for i in 0..fastest.height() {
            let value = |name: &str| -> Result<String> { Ok(format_value(&fastest.column(name)?.get(i)?)) };
            let config =
                described.iter().map(|c| Ok(format!("{c}={}", value(c)?))).collect::<Result<Vec<_>>>()?.join(", ");
            let lipschitz = match fastest.column(MEDIAN_LIPSCHITZ)?.get(i)? {
                AnyValue::Null => String::new(),
                v => format!(", median Lipschitz bound {}", format_value(&v)),
            };
            lines.push(format!(
                "Fastest qualified setting for {}: #{} ({config}): median {} epochs (IQR {}–{}){lipschitz}.",
                value(TASK_OP)?,
                value(SETTING_ID)?,
                value(MEDIAN_GROK_EPOCH)?,
                value(Q25_GROK_EPOCH)?,
                value(Q75_GROK_EPOCH)?,
            ));
        }
        Ok(lines)
    }

    pub fn settings_markdown(&self, headline: &str) -> Result<String> {
        let constant = self
            .config
            .iter()
            .filter(|c| !self.varying.contains(c))
            .map(|c| Ok(format!("`{c}` = {}", format_value(&self.settings.column(c)?.get(0)?))))
            .collect::<Result<Vec<_>>>()?
            .join(", ");
        let has_lipschitz = self.settings.column(MEDIAN_LIPSCHITZ)?.null_count() < self.settings.height();
        let mut shown: Vec<&str> = vec![SETTING_ID];
        shown.extend(self.varying.iter().map(String::as_str));
        shown.extend([SEEDS, GROKKED_SEEDS, DIVERGED_SEEDS, MEDIAN_GROK_EPOCH, Q25_GROK_EPOCH, Q75_GROK_EPOCH]);
        if has_lipschitz {
            shown.push(MEDIAN_LIPSCHITZ);
        }
        if self.skipped_runs > 0 {
            shown.extend([SKIPPED_SEEDS, PARTIAL]);
        }
        shown.push(QUALIFIED);
        let table = self.settings.select(shown).context("selecting the settings.md columns")?;
        Ok(format!(
            "# Settings\n\n{headline}\n\n\
             Epochs are medians and quartiles over the seeds that grokked; \
             `qualified`: all seeds trained and did. Every configuration column is in settings.csv.\n\n\
             Same in every setting: {constant}\n\n{}",
            markdown_table(&table)?
        ))
    }
}
