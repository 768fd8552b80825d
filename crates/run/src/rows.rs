//! Training rows: one per example, or several examples packed into one row.
use tuneguard_data::tokenize::TokenizedExample;

use crate::types::Result;
use tuneguard_train::step::{Packing, Sequence, IGNORE};

/// One training row: an example, or several packed together.
pub struct TrainRow {
    input_ids: Vec<u32>,
    labels: Vec<i64>,
    packing: Option<(Vec<u32>, Vec<u32>)>,
    /// A general-domain replay row (`[replay]`).
    replay: bool,
}

impl TrainRow {
    pub fn as_sequence(&self) -> Sequence<'_> {
        Sequence {
            input_ids: &self.input_ids,
            labels: &self.labels,
            packing: self.packing.as_ref().map(|(p, s)| Packing { position_ids: p, segment_ids: s }),
            replay: self.replay,
        }
    }

    /// A replay row: one general-domain example.
    pub fn replay(e: TokenizedExample) -> Self {
        TrainRow { input_ids: e.input_ids, labels: e.labels, packing: None, replay: true }
    }
}

/// Rows for training: one per example, or packed rows of up to `max_len` tokens. In a packed
/// row each example's first label is ignored, so no token learns to predict the next example.
pub fn training_rows(examples: Vec<TokenizedExample>, packing: bool, max_len: usize) -> Result<Vec<TrainRow>> {
    if !packing {
        return Ok(examples
            .into_iter()
            .map(|e| TrainRow { input_ids: e.input_ids, labels: e.labels, packing: None, replay: false })
            .collect());
    }
    let plan = tuneguard_data::batch::plan_packing(&examples, max_len)?;
    Ok(plan
        .iter()
        .map(|members| {
            let mut row = TrainRow {
                input_ids: Vec::new(),
                labels: Vec::new(),
                packing: Some((Vec::new(), Vec::new())),
                replay: false,
            };
            for (seg, &i) in members.iter().enumerate() {
                let e = &examples[i];
                row.input_ids.extend_from_slice(&e.input_ids);
                row.labels.extend(e.labels.iter().enumerate().map(|(k, &l)| if k == 0 { IGNORE } else { l }));
                if let Some((pos, segs)) = row.packing.as_mut() {
                    pos.extend(0..e.input_ids.len() as u32);
                    segs.extend(std::iter::repeat_n(seg as u32 + 1, e.input_ids.len()));
                }
            }
            row
        })
        .collect())
}
