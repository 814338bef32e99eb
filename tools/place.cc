#include "place.h"

#include <cstdio>

#include "cli_util.h"
#include "marconi/model_spec.h"
#include "progress.h"
#include "report_error.h"
#include "sim/file_io.h"
#include "sim/placement_experiment.h"
#include "sim/synthetic.h"

namespace marconi::tools {

int RunPlace(const PlaceOptions& o) {
  if (!o.output.empty() && o.format == "table") {
    return ReportError("place", Status::InvalidArgument(
                                    "-o/--output needs --format csv or json (the table goes to "
                                    "stdout)"));
  }
  if (!o.output.empty()) {
    if (Status s = CheckOutputFile("--output", o.output); !s.ok()) return ReportError("place", s);
  }
  if (!o.svg.empty()) {
    if (Status s = CheckOutputFile("--svg", o.svg); !s.ok()) return ReportError("place", s);
  }
  auto model = ModelSpec::FromNameOrFile(o.model);
  if (!model.ok()) return ReportError("place", model.status());
  Result<sim::Trace> trace = o.trace.empty() ? Result<sim::Trace>(sim::SyntheticDocQa(16, 1))
                                             : sim::ReadTrace(o.trace, {o.skip_bad_lines});
  if (!trace.ok()) return ReportError("place", trace.status());
  WarnTrace("place", *trace);
  sim::PlacementExperimentOptions options;
  options.chunk_tokens = o.chunk;
  options.budgets = o.budgets;
  options.attention_aware = o.attention_aware;
  Progress progress("place");
  options.progress = progress.Callback("strategy runs");
  auto points = sim::RunPlacementExperiment(*trace, *model, options);
  progress.Finish();
  if (!points.ok()) return ReportError("place", points.status());
  if (trace->skipped_lines > 0) {
    std::fprintf(stderr, "marconi place: skipped %lld malformed lines of %s\n",
                 static_cast<long long>(trace->skipped_lines), trace->source.c_str());
  }
  std::string text;
  if (o.format == "csv") {
    text = sim::PlacementCsv(*points);
  } else if (o.format == "json") {
    text = sim::PlacementJson(*points);
  } else {
    char buf[256];
    std::snprintf(buf, sizeof(buf),
                  "%s: %zu requests, %lld input tokens; chunk %lld tokens, model %s\n\n",
                  trace->source.c_str(), trace->requests.size(),
                  static_cast<long long>(trace->input_tokens()), static_cast<long long>(o.chunk),
                  model->name().c_str());
    text = buf;
    std::snprintf(buf, sizeof(buf), "%-11s %9s %16s %14s %16s\n", "strategy", "param",
                  "ckpts/request", "prefill saved", "recomputed tok");
    text += buf;
    for (const auto& p : *points) {
      std::snprintf(buf, sizeof(buf), "%-11s %9lld %16.2f %13.2f%% %16lld\n", p.strategy.c_str(),
                    static_cast<long long>(p.parameter), p.checkpoints_per_request(),
                    100 * p.saved_fraction(), static_cast<long long>(p.recomputed_tokens));
      text += buf;
    }
    text +=
        "\nparam: checkpoint budget per entry (dp, balanced, sqrt, dyadic) or block size in "
        "tokens (block).\nckpts/request counts every state admitted, the last-token one "
        "included.\n";
  }
  if (o.output.empty()) {
    std::fputs(text.c_str(), stdout);
  } else if (Status s = sim::WriteFile(o.output, text); !s.ok()) {
    return ReportError("place", s);
  }
  if (!o.svg.empty()) {
    const std::string title = "Sparse placement on " + trace->source;
    if (Status s = sim::WriteFile(o.svg, sim::PlacementSvg(*points, title)); !s.ok()) {
      return ReportError("place", s);
    }
  }
  return 0;
}

}  // namespace marconi::tools
