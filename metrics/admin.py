"""Read-only admin for metrics: rows are written only by metrics.services.turn_metrics_record."""

from django.contrib import admin

from metrics.format import format_duration, format_tokens
from metrics.models import StepMetrics, TurnMetrics


class ReadOnlyAdminMixin:
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class StepMetricsInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = StepMetrics
    fields = (
        "index",
        "step_id",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "ttft_ms",
        "decode_ms",
        "gen_total_ms",
    )
    extra = 0


@admin.register(TurnMetrics)
class TurnMetricsAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("turn_id", "model", "finish_reason", "tokens", "duration", "created_at")
    list_filter = ("model", "finish_reason")
    search_fields = ("turn__id", "conversation__id", "model")
    date_hierarchy = "created_at"
    inlines = [StepMetricsInline]

    @admin.display(description="tokens (in / out)")
    def tokens(self, row: TurnMetrics) -> str:
        return f"{format_tokens(row.input_tokens)} / {format_tokens(row.output_tokens)}"

    @admin.display(description="duration", ordering="duration_ms")
    def duration(self, row: TurnMetrics) -> str:
        return format_duration(row.duration_ms) if row.duration_ms is not None else "–"


@admin.register(StepMetrics)
class StepMetricsAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "step_id",
        "input_tokens",
        "output_tokens",
        "ttft_ms",
        "decode_ms",
        "gen_total_ms",
    )
    search_fields = ("step_id",)
