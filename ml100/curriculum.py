"""The 100 days: each topic, the phase folder and module that hold it, and its reference checks.

Transferred from the project's curriculum. :func:`status` reads the trees: a day counts as
implemented only when its module exists in all three (and its example, where it needs one).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .backends import BACKENDS

#: The repository root (the trees sit beside this package in a source or editable install).
ROOT = Path(__file__).resolve().parent.parent


#: Topics with no tensor math (merge bookkeeping, precision/recall bookkeeping): they live once in
#: ``ml100/``, not in the three trees, and ``parity_tests/test_mirror.py`` lists them by name.
NEUTRAL_MODULES = frozenset({"bpe", "detection_metrics"})
#: The module-less capstones: day -> the example that is the day's work.
CAPSTONE_EXAMPLES = {70: "examples/capstone_digits.py"}


@dataclass(frozen=True)
class Day:
    number: int
    phase: str
    topic: str
    module: str | None
    needs_example: bool
    checks: str

    @property
    def neutral(self) -> bool:
        """True for a topic with no tensor math, written once in the neutral package ``ml100/``."""
        return self.module in NEUTRAL_MODULES

    @property
    def where(self) -> str | None:
        """Where the day's work lives: its module's path, or a capstone's example script."""
        return self.path or CAPSTONE_EXAMPLES.get(self.number)

    @property
    def path(self) -> str | None:
        """The module's path inside each tree, e.g. ``foundations/mlp.py``; ``ml100/bpe.py`` for a
        neutral topic."""
        if self.module is None:
            return None
        return f"ml100/{self.module}.py" if self.neutral else f"{self.phase}/{self.module}.py"


DAYS = (
    Day(1, 'foundations', 'Linear regression: normal equation, batch GD, SGD from scratch', 'linear_regression', False, 'closed form vs `numpy.linalg.lstsq`; SGD loss curve identical across trees'),
    Day(2, 'foundations', 'Polynomial features, ridge (L2) regression, train/validation curves', 'linear_regression', False, 'ridge closed form'),
    Day(3, 'foundations', 'Logistic regression, numerically stable BCE-with-logits', 'logistic_regression', False, '`torch.nn.BCEWithLogitsLoss`, `keras.losses.BinaryCrossentropy(from_logits=True)`'),
    Day(4, 'foundations', 'Softmax regression, log-sum-exp cross-entropy', 'softmax_regression', False, '`F.cross_entropy`; no overflow at logits ±1e4'),
    Day(5, 'foundations', 'Activations: ReLU, LeakyReLU, ELU, GELU (erf and tanh), SiLU, sigmoid, tanh, softplus', 'activations', False, '`torch.nn.functional`, `keras.activations`'),
    Day(6, 'foundations', 'Dense layer; Xavier/Glorot, He/Kaiming, LeCun initializers', 'linear', False, '`nn.Linear`, `keras.layers.Dense`; initializer statistics'),
    Day(7, 'foundations', 'MLP and backpropagation; finite-difference gradient check', 'mlp', False, 'gradcheck of the NumPy backward'),
    Day(8, 'foundations', 'Losses: MSE, MAE, Huber, BCE, CE with label smoothing, KL', 'losses', False, 'torch and Keras losses'),
    Day(9, 'foundations', 'Optimizers I: SGD, momentum, Nesterov', 'optim', False, '`torch.optim.SGD`, `keras.optimizers.SGD` trajectories'),
    Day(10, 'foundations', 'Optimizers II: AdaGrad, RMSProp, Adam, AdamW', 'optim', False, '`torch.optim`, `keras.optimizers` trajectories'),
    Day(11, 'foundations', 'Training loop; MLP on digits; same loss curve with every backend', 'trainer', False, 'float64 loss curves identical over 100 steps'),
    Day(12, 'foundations', 'Dropout (inverted, mask passed in), weight decay, early stopping', 'regularization', False, '`F.dropout` statistics'),
    Day(13, 'foundations', 'Batch normalization: train/eval, running stats, backward', 'batchnorm', False, '`nn.BatchNorm1d/2d`, `keras.layers.BatchNormalization` (momentum convention, unbiased running var)'),
    Day(14, 'foundations', 'LayerNorm, RMSNorm, GroupNorm', 'normalization', False, '`nn.LayerNorm`, `nn.RMSNorm`, `nn.GroupNorm`, Keras equivalents'),
    Day(15, 'foundations', 'Conv2d by im2col: stride, padding (incl. TF "same" asymmetry), dilation, groups', 'conv', False, '`F.conv2d`, `tf.nn.conv2d`'),
    Day(16, 'foundations', 'Max, average and global average pooling', 'pooling', False, '`F.max_pool2d`, Keras pooling'),
    Day(17, 'foundations', 'LeNet-style CNN on digits', 'cnn', False, 'trains ≥ 98% test accuracy'),
    Day(18, 'foundations', 'Residual networks: basic and bottleneck blocks, mini-ResNet', 'resnet', False, 'torchvision `resnet18` weights load into ours and match'),
    Day(19, 'foundations', 'Depthwise-separable conv, squeeze-and-excitation (MobileNet-style)', 'mobilenet', False, '`tf.nn.depthwise_conv2d`, grouped `F.conv2d`'),
    Day(20, 'foundations', 'Data augmentation: flip, pad-and-crop, cutout, mixup, cutmix (randomness passed in)', 'augmentation', False, '`torchvision.transforms.v2.functional`, `tf.image`; accuracy with vs without'),
    Day(21, 'generative', 'Embedding layer (scatter-add backward), padding index', 'embedding', False, '`nn.Embedding`, `keras.layers.Embedding`'),
    Day(22, 'generative', 'Vanilla RNN and backpropagation through time', 'rnn', False, '`nn.RNN`, `keras.layers.SimpleRNN`'),
    Day(23, 'generative', 'Exploding/vanishing gradients; global-norm clipping', 'clipping', False, '`clip_grad_norm_`, `tf.clip_by_global_norm`'),
    Day(24, 'generative', 'LSTM (gates i, f, g, o; two biases)', 'lstm', False, '`nn.LSTM`, `keras.layers.LSTM`'),
    Day(25, 'generative', 'GRU (reset-after; gate order differs between torch and Keras)', 'gru', False, '`nn.GRU`, `keras.layers.GRU(reset_after=True)`'),
    Day(26, 'generative', 'Stacked and bidirectional RNNs, variable lengths and masking', 'bidirectional', False, '`nn.LSTM(num_layers=2, bidirectional=True)`, `keras.layers.Bidirectional`'),
    Day(27, 'generative', 'Character-level LSTM language model: train, sample with temperature', 'char_lm', False, 'loss falls; same samples across trees for the same noise'),
    Day(28, 'generative', 'Seq2seq encoder–decoder with teacher forcing', 'seq2seq', False, 'learns a toy task (reverse/copy)'),
    Day(29, 'generative', 'Additive (Bahdanau) and multiplicative (Luong) attention', 'seq2seq_attention', False, '`keras.layers.AdditiveAttention`, `keras.layers.Attention`'),
    Day(30, 'generative', 'Transposed convolution and upsampling', 'conv_transpose', False, '`F.conv_transpose2d`, `tf.nn.conv2d_transpose`'),
    Day(31, 'generative', 'Convolutional autoencoder on digits', 'autoencoder', False, 'reconstruction error falls'),
    Day(32, 'generative', 'VAE: reparameterization (ε passed in), KL term, ELBO', 'vae', False, 'ELBO identical across trees'),
    Day(33, 'generative', 'GAN: generator, discriminator, non-saturating loss, alternating steps', 'gan', False, "both players' gradients identical"),
    Day(34, 'generative', 'DCGAN', 'dcgan', False, ''),
    Day(35, 'generative', 'Wasserstein GAN with spectral normalization (power iteration)', 'wgan', False, '`torch.nn.utils.parametrizations.spectral_norm`'),
    Day(36, 'generative', 'Conditional GAN / conditional VAE', 'conditional', False, ''),
    Day(37, 'generative', 'Diffusion I: linear and cosine noise schedules, forward process q(x_t∣x_0)', 'diffusion_schedule', False, '`diffusers.DDPMScheduler` betas, `alphas_cumprod`, `add_noise`'),
    Day(38, 'generative', 'Diffusion II: small U-Net ε-predictor with sinusoidal time embedding', 'unet', False, ''),
    Day(39, 'generative', 'Diffusion III: DDPM training objective and ancestral sampling', 'ddpm', False, '`diffusers.DDPMScheduler.step`'),
    Day(40, 'generative', 'Diffusion IV: DDIM sampling, classifier-free guidance', 'ddim', False, '`diffusers.DDIMScheduler.step`'),
    Day(41, 'modern', 'Scaled dot-product attention with padding and causal masks', 'attention', False, '`F.scaled_dot_product_attention`'),
    Day(42, 'modern', 'Multi-head attention (packed QKV)', 'multihead', False, '`nn.MultiheadAttention`, `keras.layers.MultiHeadAttention`'),
    Day(43, 'modern', 'Sinusoidal and learned positional encodings', 'positional', False, ''),
    Day(44, 'modern', 'Rotary embeddings (RoPE) and ALiBi', 'rope', False, 'Hugging Face rotary embedding on the same inputs'),
    Day(45, 'modern', 'Encoder block: post-LN vs pre-LN, feed-forward', 'encoder', False, '`nn.TransformerEncoderLayer` (`norm_first` both ways)'),
    Day(46, 'modern', 'Decoder block: causal self-attention, cross-attention', 'decoder', False, '`nn.TransformerDecoderLayer`'),
    Day(47, 'modern', 'Encoder–decoder Transformer on a toy task', 'transformer', False, '`nn.Transformer`; learns the task'),
    Day(48, 'modern', 'Byte-pair encoding tokenizer trained from scratch', 'bpe', False, 'Hugging Face `tokenizers` BPE on the same corpus'),
    Day(49, 'modern', 'GPT (GPT-2 layout, tied embeddings, tanh GELU)', 'gpt', False, 'Hugging Face `GPT2LMHeadModel` state dict loads and logits match'),
    Day(50, 'modern', 'Decoding: greedy, temperature, top-k, top-p', 'sampling', False, 'Hugging Face logits processors'),
    Day(51, 'modern', 'KV cache for incremental decoding', 'kv_cache', False, 'cached logits equal uncached'),
    Day(52, 'modern', 'BERT encoder: token, position, segment embeddings', 'bert', False, 'Hugging Face `BertModel`; real all-MiniLM-L6-v2 weights give the published embeddings'),
    Day(53, 'modern', 'BERT pre-training: 80/10/10 masking, MLM and NSP heads', 'bert_pretraining', False, 'Hugging Face `BertForPreTraining`'),
    Day(54, 'modern', 'BERT fine-tuning for classification', 'bert_classifier', False, 'Hugging Face `BertForSequenceClassification`'),
    Day(55, 'modern', 'Vision Transformer: patch embedding, class token, position embedding', 'vit', False, 'Hugging Face `ViTModel`'),
    Day(56, 'modern', 'Train a small ViT on digits; compare with the CNN', 'vit', True, 'test accuracy beside the day-17 CNN (`examples/train_vit.py`)'),
    Day(57, 'modern', 'MLP-Mixer', 'mlp_mixer', False, '`timm` `MlpMixer` state dict loads and logits match'),
    Day(58, 'modern', 'Boxes: formats, IoU, GIoU', 'boxes', False, '`torchvision.ops.box_iou`, `generalized_box_iou`'),
    Day(59, 'modern', 'Non-maximum suppression', 'nms', False, '`torchvision.ops.nms`, `tf.image.non_max_suppression`'),
    Day(60, 'modern', 'YOLO target assignment: grid cells and anchors', 'yolo', False, 'assignment rules on hand-built scenes'),
    Day(61, 'modern', 'YOLO head and loss: objectness, class, box', 'yolo', False, '`torch.nn` network and `F` losses fed the same weights'),
    Day(62, 'modern', 'Tiny YOLO on generated shapes: train, decode, NMS', 'yolo', True, 'detects the shapes'),
    Day(63, 'modern', 'Mean average precision (AP@0.5, AP@[.5:.95])', 'detection_metrics', False, "hand-computed cases; `torchmetrics` `MeanAveragePrecision`"),
    Day(64, 'modern', 'LoRA: low-rank adapters, α/r scaling, merge/unmerge', 'lora', False, '`peft` LoRA on the same base weights'),
    Day(65, 'modern', 'LoRA fine-tuning of a small transformer; trainable-parameter count', 'lora', True, '`peft` trainable-parameter count (`examples/train_lora.py`)'),
    Day(66, 'modern', 'Mixture of experts: top-k gating, load-balancing loss', 'moe', False, 'a Hugging Face sparse-MoE block'),
    Day(67, 'modern', 'Multi-query and grouped-query attention', 'gqa', False, '`F.scaled_dot_product_attention(enable_gqa=True)`'),
    Day(68, 'modern', 'Sliding-window and linear attention', 'efficient_attention', False, 'equals masked full attention (sliding window)'),
    Day(69, 'modern', 'Llama-style block: RMSNorm, SwiGLU, RoPE', 'llama', False, 'Hugging Face `LlamaModel`'),
    Day(70, 'modern', 'Capstone: MLP vs CNN vs ViT vs Mixer on digits — accuracy, parameters, speed', None, True, 'a table and a plot'),
    Day(71, 'optimization', 'Profiling: FLOPs and memory per layer', 'profiling', False, '`torch.utils.flop_counter.FlopCounterMode` counts'),
    Day(72, 'optimization', 'Number formats: fp32, fp16, bf16 rounding and range; bf16 emulated in NumPy', 'precision', False, 'torch/TF casts bit-exact'),
    Day(73, 'optimization', 'Mixed-precision training: autocast policy, fp32 master weights', 'mixed_precision', False, '`torch.autocast` (CPU bf16), Keras `mixed_bfloat16` policy; accuracy kept'),
    Day(74, 'optimization', 'Loss scaling: static and dynamic, skip on overflow', 'loss_scaling', False, '`torch.amp.GradScaler`, `keras.optimizers.LossScaleOptimizer`'),
    Day(75, 'optimization', 'Gradient accumulation ≡ large batch', 'grad_accumulation', False, 'gradients equal'),
    Day(76, 'optimization', 'Gradient checkpointing: recompute segments; memory vs time', 'checkpointing', False, '`torch.utils.checkpoint`, `tf.recompute_grad`; gradients equal, memory measured'),
    Day(77, 'optimization', 'Flash attention I: online softmax, tiled forward', 'flash_attention', False, 'equals naive attention; O(N) extra memory'),
    Day(78, 'optimization', 'Flash attention II: tiled backward with recomputation', 'flash_attention', False, 'gradients equal naive'),
    Day(79, 'optimization', 'Quantization I: affine int8, per-tensor/per-channel, int8 matmul with int32 accumulation', 'quantization', False, '`torch.quantize_per_tensor`/`per_channel` integers equal'),
    Day(80, 'optimization', 'Quantization II: post-training quantization with calibration', 'ptq', False, '`torch.ao.quantization.quantize_dynamic`; accuracy drop on digits'),
    Day(81, 'optimization', 'Quantization III: quantization-aware training, fake quant, straight-through estimator', 'qat', False, '`torch.fake_quantize_per_tensor_affine`, `tf.quantization.fake_quant_with_min_max_vars`, tensorflow-model-optimization `quantize_model`'),
    Day(82, 'optimization', '4-bit group-wise weight quantization', 'int4', False, 'round-trip error bounds'),
    Day(83, 'optimization', 'Pruning: magnitude, structured, sparsity schedule', 'pruning', False, '`torch.nn.utils.prune`, tensorflow-model-optimization `prune_low_magnitude`'),
    Day(84, 'optimization', 'Knowledge distillation', 'distillation', False, ''),
    Day(85, 'optimization', 'Low-rank (SVD) compression of dense layers', 'low_rank', False, ''),
    Day(86, 'optimization', 'Fusion and compilation: fused bias-GELU, `torch.compile`, `tf.function(jit_compile=True)`', 'fusion', False, 'measured speedups'),
    Day(87, 'optimization', 'Data parallelism: all-reduce, `torch.distributed` (gloo), `tf.distribute`', 'data_parallel', False, 'equals single-process large batch'),
    Day(88, 'optimization', 'Memory-efficient optimizers: Adafactor, 8-bit optimizer state', 'efficient_optim', False, '`torch.optim.Adafactor`, `keras.optimizers.Adafactor`'),
    Day(89, 'optimization', 'Input pipelines: prefetching and parallel loading', 'data_pipeline', False, '`tf.data`, `torch.utils.data.DataLoader`'),
    Day(90, 'optimization', 'Capstone: speed up a GPT training step (mixed precision + checkpointing + flash attention)', None, True, 'speed/memory/accuracy table'),
    Day(91, 'analysis', 'Training diagnostics: activation/gradient statistics, dead ReLUs, update/weight ratios', 'diagnostics', False, ''),
    Day(92, 'analysis', 'Attention heatmaps and attention rollout', 'attention_maps', False, 'PNG heatmaps'),
    Day(93, 'analysis', 'Saliency maps and SmoothGrad (noise passed in)', 'saliency', False, '`captum.attr.Saliency`, `NoiseTunnel`'),
    Day(94, 'analysis', 'Integrated gradients', 'integrated_gradients', False, '`captum.attr.IntegratedGradients`; completeness'),
    Day(95, 'analysis', 'Grad-CAM', 'grad_cam', False, '`captum.attr.LayerGradCam`'),
    Day(96, 'analysis', 'Shapley values: exact enumeration and KernelSHAP', 'shap_values', False, '`shap.KernelExplainer` / exact explainer'),
    Day(97, 'analysis', 'Gradient SHAP and DeepLIFT', 'gradient_shap', False, '`captum.attr.GradientShap`, `DeepLift`'),
    Day(98, 'analysis', 'Loss landscapes: 1D interpolation, 2D filter-normalized slices', 'loss_landscape', False, 'contour PNG'),
    Day(99, 'analysis', 'Sharpness: Hessian-vector products, top eigenvalue by power iteration', 'hessian', False, '`torch.autograd.functional.hvp`'),
    Day(100, 'analysis', 'Capstone: debug a broken network with the toolkit', None, True, 'finds each planted bug'),
)


def is_implemented(day: Day, root: Path = ROOT) -> bool:
    """True when the day's module has all three twins, or exists in ``ml100/`` for a neutral topic
    (a module-less capstone needs its example)."""
    if day.module is None:
        return day.number in CAPSTONE_EXAMPLES and (root / CAPSTONE_EXAMPLES[day.number]).is_file()
    if day.neutral:
        return (root / day.path).is_file()
    return all((root / package / day.path).is_file() for package in BACKENDS.values())


def status(root: Path = ROOT) -> list[tuple[Day, bool]]:
    """Every day with whether it is implemented in all three trees."""
    return [(day, is_implemented(day, root)) for day in DAYS]



def markdown(root: Path = ROOT) -> str:
    """The curriculum as the Markdown table of ``docs/curriculum.md`` (kept in sync by a test)."""
    lines = ["# The 100-day curriculum", "",
             "Generated by `ml100 list --markdown` from `ml100/curriculum.py`; a day is **done** when its",
             "module exists in all three trees (`numpy_impl/`, `torch_impl/`, `tf_impl/`) with its parity test.",
             "Each implemented day's topic links to its page (in `docs/days/`).", ""]
    phase = None
    for day, implemented in status(root):
        if day.phase != phase:
            phase = day.phase
            lines += ["", f"## `{phase}/`", "", "| day | topic | module | checks beyond parity | status |", "|---|---|---|---|---|"]
        module = f"`{day.where}`" if day.where else "example"
        page = root / "docs" / "days" / f"day{day.number:02d}.md"
        topic = f"[{day.topic}](days/{page.name})" if page.is_file() else day.topic
        lines.append(f"| {day.number} | {topic} | {module} | {day.checks} | {'done' if implemented else 'planned'} |")
    return "\n".join(lines) + "\n"
