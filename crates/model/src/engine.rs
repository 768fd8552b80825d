//! One entry point for a model on disk: detect the format, read config, weights, tokenizer and
//! chat template, and check they fit together.
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::chat::{chat_template_from_gguf, find_chat_template_in_dir, ChatTemplate};
use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::gguf::{GgufFile, GGUF_MAGIC};
use crate::llama::Llama;
use crate::load::build_llama;
use crate::load::gguf_source::GgufSource;
use crate::load::safetensors_source::SafetensorsSource;
use crate::lora::LoraAdapter;
use crate::tokenizer::TextTokenizer;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelFormat {
    Gguf,
    Safetensors,
}

/// Where a model's files are.
#[derive(Debug, Clone)]
pub struct ModelLocation {
    pub format: ModelFormat,
    /// The GGUF file, or the Hugging Face directory.
    pub path: PathBuf,
    /// For a `.safetensors` file named directly: that file (its directory gives config and
    /// tokenizer). `None` means the directory's `model.safetensors` or sharded index.
    pub weights_file: Option<PathBuf>,
}

/// Decides the format of `path`: a GGUF file, a Hugging Face directory, or a `.safetensors` file
/// inside one.
///
/// # Errors
/// `Io` for a missing path, `UnknownFormat` for anything else.
pub fn locate(path: &Path) -> Result<ModelLocation> {
    let meta = std::fs::metadata(path).map_err(|e| ModelError::io(path, e))?;
    if meta.is_dir() {
        if !path.join("config.json").is_file() {
            return Err(ModelError::InvalidConfig { path: path.join("config.json"), reason: "file not found".into() });
        }
        return Ok(ModelLocation { format: ModelFormat::Safetensors, path: path.to_path_buf(), weights_file: None });
    }
    let mut magic = [0u8; 4];
    let mut f = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
    let n = f.read(&mut magic).map_err(|e| ModelError::io(path, e))?;
    if n == 4 && &magic == GGUF_MAGIC {
        return Ok(ModelLocation { format: ModelFormat::Gguf, path: path.to_path_buf(), weights_file: None });
    }
    if path.extension().is_some_and(|e| e == "safetensors") {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let config = dir.join("config.json");
        if !config.is_file() {
            return Err(ModelError::InvalidConfig {
                path: config,
                reason: format!("file not found (needed beside {})", path.display()),
            });
        }
        return Ok(ModelLocation {
            format: ModelFormat::Safetensors,
            path: dir.to_path_buf(),
            weights_file: Some(path.to_path_buf()),
        });
    }
    Err(ModelError::UnknownFormat { path: path.to_path_buf() })
}

/// A model's config alone, from the GGUF header or `config.json`: no weight, tokenizer or chat
/// template is read, so a caller can check its settings (e.g. a context length) before paying
/// for a load.
///
/// # Errors
/// As [`locate`], and the config's own errors, naming the file.
pub fn read_config(path: &Path) -> Result<ModelConfig> {
    let location = locate(path)?;
    match location.format {
        ModelFormat::Gguf => ModelConfig::from_gguf(&GgufFile::open(&location.path)?),
        ModelFormat::Safetensors => ModelConfig::from_hf_config(&location.path.join("config.json")),
    }
}

/// A model ready to run.
pub struct LoadedModel {
    pub location: ModelLocation,
    pub model: Llama,
    pub tokenizer: TextTokenizer,
    pub chat_template: Option<ChatTemplate>,
    /// Tensor storage types → number of tensors (e.g. `Q4_1 → 210`).
    pub tensor_types: BTreeMap<String, usize>,
    /// `general.name` of a GGUF, or the directory name.
    pub name: String,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel").field("location", &self.location).field("name", &self.name).finish()
    }
}

fn check_vocab(tok: &TextTokenizer, cfg: &ModelConfig) -> Result<()> {
    if tok.vocab_size() > cfg.vocab_size {
        return Err(ModelError::Tokenizer {
            path: tok.source().to_path_buf(),
            reason: format!(
                "the tokenizer has {} tokens but the model's embedding has only {} rows",
                tok.vocab_size(),
                cfg.vocab_size
            ),
        });
    }
    Ok(())
}

/// Loads a model (GGUF file or Hugging Face directory) with its tokenizer and chat template.
///
/// # Errors
/// Any [`ModelError`], naming the file at fault.
pub fn load(path: &Path) -> Result<LoadedModel> {
    let location = locate(path)?;
    match location.format {
        ModelFormat::Gguf => {
            let g = GgufFile::open(&location.path)?;
            let config = ModelConfig::from_gguf(&g)?;
            let tokenizer = TextTokenizer::from_gguf(&g)?;
            check_vocab(&tokenizer, &config)?;
            let chat_template = ChatTemplate::from_gguf(&g, tokenizer.bos_token(), tokenizer.eos_token())?;
            let model = build_llama(&config, &GgufSource { file: &g, head_dim: config.head_dim })?;
            let mut tensor_types = BTreeMap::new();
            for t in &g.tensors {
                *tensor_types.entry(t.ty.name().to_string()).or_insert(0) += 1;
            }
            let name = g.get_str("general.name").map(str::to_string).unwrap_or_else(|| file_stem(&location.path));
            Ok(LoadedModel { location, model, tokenizer, chat_template, tensor_types, name })
        }
        ModelFormat::Safetensors => {
            let dir = location.path.clone();
            let config = ModelConfig::from_hf_config(&dir.join("config.json"))?;
            let tokenizer = TextTokenizer::from_file(&dir.join("tokenizer.json"))?;
            check_vocab(&tokenizer, &config)?;
            let chat_template = ChatTemplate::from_hf_dir(&dir, tokenizer.bos_token(), tokenizer.eos_token())?;
            let src = open_weights(&location)?;
            let tensor_types = src.dtype_counts();
            let model = build_llama(&config, &src)?;
            Ok(LoadedModel { location, model, tokenizer, chat_template, tensor_types, name: file_stem(&dir) })
        }
    }
}

impl LoadedModel {
    /// The tokens that end a reply: the config's EOS ids, the tokenizer's EOS and the
    /// end-of-turn tokens of the common chat formats (`<|im_end|>`, `<|eot_id|>`...) it has.
    pub fn stop_tokens(&self) -> Vec<u32> {
        let mut stops: Vec<u32> = self.model.config.eos_token_ids.clone();
        stops.extend(self.tokenizer.eos_id());
        for t in ["<|im_end|>", "<|eot_id|>", "<|endoftext|>", "</s>"] {
            stops.extend(self.tokenizer.token_to_id(t));
        }
        stops.sort_unstable();
        stops.dedup();
        stops
    }
}

/// Loads a model and attaches a PEFT LoRA adapter when `adapter` is given.
pub fn load_with_adapter(path: &Path, adapter: Option<&Path>) -> Result<LoadedModel> {
    let mut m = load(path)?;
    if let Some(dir) = adapter {
        LoraAdapter::load(dir)?.apply(&mut m.model)?;
    }
    Ok(m)
}

fn open_weights(location: &ModelLocation) -> Result<SafetensorsSource> {
    match &location.weights_file {
        Some(file) => SafetensorsSource::open_files(&location.path, std::slice::from_ref(file)),
        None => SafetensorsSource::open_dir(&location.path),
    }
}

fn file_stem(p: &Path) -> String {
    p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

/// What `tuneguard inspect` reports; read from headers and metadata only (no weights decoded).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelInfo {
    pub path: PathBuf,
    pub format: ModelFormat,
    pub name: String,
    pub config: ModelConfig,
    /// Parameters stored in the file (tied embeddings counted once).
    pub parameters: usize,
    /// Storage type → (tensors, parameters).
    pub tensor_types: BTreeMap<String, (usize, usize)>,
    pub file_bytes: u64,
    pub tokenizer_vocab_size: usize,
    pub bos: Option<(u32, String)>,
    pub eos: Option<(u32, String)>,
    pub pad: Option<(u32, String)>,
    pub special_tokens: Vec<(u32, String)>,
    pub add_bos_token: bool,
    pub chat_template: Option<String>,
}

/// Reads a model's description without decoding its weights.
///
/// # Errors
/// Any [`ModelError`], naming the file at fault.
pub fn inspect(path: &Path) -> Result<ModelInfo> {
    let location = locate(path)?;
    let (config, tokenizer, tensor_types, file_bytes, name, template) = match location.format {
        ModelFormat::Gguf => {
            let g = GgufFile::open(&location.path)?;
            let config = ModelConfig::from_gguf(&g)?;
            let tokenizer = TextTokenizer::from_gguf(&g)?;
            let mut types: BTreeMap<String, (usize, usize)> = BTreeMap::new();
            for t in &g.tensors {
                let e = types.entry(t.ty.name().to_string()).or_default();
                e.0 += 1;
                e.1 += t.n_elements();
            }
            let bytes = std::fs::metadata(&location.path).map_err(|e| ModelError::io(&location.path, e))?.len();
            let name = g.get_str("general.name").map(str::to_string).unwrap_or_else(|| file_stem(&location.path));
            let template = chat_template_from_gguf(&g).map(str::to_string);
            (config, tokenizer, types, bytes, name, template)
        }
        ModelFormat::Safetensors => {
            let dir = &location.path;
            let config = ModelConfig::from_hf_config(&dir.join("config.json"))?;
            let tokenizer = TextTokenizer::from_file(&dir.join("tokenizer.json"))?;
            let src = open_weights(&location)?;
            let (types, bytes) = src.summary();
            let template = find_chat_template_in_dir(dir)?.map(|(text, _)| text);
            (config, tokenizer, types, bytes, file_stem(dir), template)
        }
    };
    check_vocab(&tokenizer, &config)?;
    let named = |id: Option<u32>| id.map(|i| (i, tokenizer.id_to_token(i).unwrap_or_default()));
    Ok(ModelInfo {
        path: location.path.clone(),
        format: location.format,
        name,
        parameters: tensor_types.values().map(|v| v.1).sum(),
        config,
        tensor_types,
        file_bytes,
        tokenizer_vocab_size: tokenizer.vocab_size(),
        bos: named(tokenizer.bos_id()),
        eos: named(tokenizer.eos_id()),
        pad: named(tokenizer.pad_id()),
        special_tokens: tokenizer.special_tokens(),
        add_bos_token: tokenizer.add_bos_token(),
        chat_template: template,
    })
}
