//! Stratified validation split of the real Super-NaturalInstructions sample by its `category`.
use std::collections::BTreeMap;

use tuneguard_data::{load_file, read_field_values, split_indices, LoadOptions, ValSize};

#[test]
fn superni_stratified_by_category() -> anyhow::Result<()> {
    let path = tuneguard_model::testutil::shared_dir().join("data/instruction/superni_en_shared.jsonl");
    let data = load_file(&path, &LoadOptions::default())?;
    assert_eq!(data.examples.len(), 12_800);
    let values = read_field_values(&path, "category")?;
    let labels: Vec<Option<String>> = data.lines.iter().map(|l| values.get(l).cloned()).collect();
    assert!(labels.iter().all(Option::is_some));

    let (train, val) = split_indices(data.examples.len(), ValSize::Fraction(0.05), 5, Some(&labels))?;
    assert_eq!((train.len(), val.len()), (12_160, 640));
    let mut per_category: BTreeMap<&str, usize> = BTreeMap::new();
    for &i in &val {
        *per_category.entry(labels[i].as_deref().unwrap_or("")).or_default() += 1;
    }
    // 16 categories × 800 rows: each quota is 640·800/12800 = 40 exactly.
    assert_eq!(per_category.len(), 16);
    assert!(per_category.values().all(|&c| c == 40), "{per_category:?}");
    // The members drawn for seed 5 are pinned (a generator change would move them).
    assert_eq!((&val[..8], val.iter().sum::<usize>()), (&[14, 17, 23, 25, 34, 68, 125, 174][..], 4_095_553));
    // Deterministic for the seed.
    assert_eq!(split_indices(data.examples.len(), ValSize::Fraction(0.05), 5, Some(&labels))?.1, val);
    Ok(())
}
