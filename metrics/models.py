"""Durable per-turn and per-step metrics (docs/protocol.md#2-chunks-and-the-log TurnMetrics / StepMetrics)."""

from django.db import models


class TurnMetrics(models.Model):
    turn = models.OneToOneField("chat.Turn", on_delete=models.CASCADE, related_name="metrics")
    conversation = models.ForeignKey(
        "chat.Conversation", on_delete=models.CASCADE, related_name="turn_metrics"
    )
    model = models.CharField(max_length=300, blank=True, default="")
    finish_reason = models.CharField(max_length=40)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    # The provider did not report all of it (a stopped or failed step): the output of such
    # steps was counted from the streamed deltas.
    output_tokens_estimated = models.BooleanField(default=False)
    cache_read_tokens = models.PositiveBigIntegerField(null=True, blank=True)
    cache_write_tokens = models.PositiveBigIntegerField(null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    context_size = models.PositiveBigIntegerField(null=True, blank=True)
    # Sum over steps, kept so throughput aggregates in SQL without joining steps.
    gen_total_ms = models.FloatField(null=True, blank=True)
    decode_ms = models.FloatField(null=True, blank=True)
    # Sum over steps of (decodeMs ?? genTotalMs): the time TPS divides by. Summing the two
    # turn-level columns above cannot give it, since a tool-call-only step has no decodeMs.
    # Steps that produced no output token add no time (metrics.format.turn_generation_ms).
    generation_ms = models.FloatField(null=True, blank=True)
    ttft_ms = models.FloatField(
        null=True, blank=True, help_text="TTFT of the first step that streamed tokens"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Copied from another turn by a fork or an import: shown with its conversation, left out
    # of the throughput aggregates (the generation it measures is counted once, or was not
    # this server's).
    copied = models.BooleanField(default=False)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name_plural = "turn metrics"
        indexes = [
            models.Index(fields=["created_at", "model"]),
            # A conversation's turns in order (the metrics endpoint) and an owner's window
            # (joined through the conversation) both walk this index.
            models.Index(fields=["conversation", "created_at"]),
        ]

    def __str__(self) -> str:
        return self.turn_id


class StepMetrics(models.Model):
    turn_metrics = models.ForeignKey(TurnMetrics, on_delete=models.CASCADE, related_name="steps")
    step_id = models.CharField(max_length=80)
    index = models.PositiveIntegerField()
    # "compaction": the model call that wrote a compaction summary; "step": a step.
    kind = models.CharField(max_length=12, default="step")
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens_estimated = models.BooleanField(default=False)
    cache_read_tokens = models.PositiveBigIntegerField(null=True, blank=True)
    cache_write_tokens = models.PositiveBigIntegerField(null=True, blank=True)
    ttft_ms = models.FloatField(null=True, blank=True)
    decode_ms = models.FloatField(null=True, blank=True)
    gen_total_ms = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["turn_metrics", "index"]
        verbose_name_plural = "step metrics"
