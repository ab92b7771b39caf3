"""Parameter-efficient adapters added to a timm backbone (`model.peft`): LoRA through peft, and AdaptFormer."""

ADAPTER_MARKERS = (".lora_", ".adaptformer.")  # in the name of every adapter parameter, and of no base weight


def is_adapter(name: str) -> bool:
    """Whether the parameter (or state-dict key) `name` belongs to an adapter rather than to the base model."""
    return any(marker in f".{name}" for marker in ADAPTER_MARKERS)
