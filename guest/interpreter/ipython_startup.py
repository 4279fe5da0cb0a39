# warren-interpreter's IPython start-up (run in every kernel it starts,
# docs/code-interpreter.md "Charts"): a display formatter that describes a
# matplotlib figure as data, in the shape @e2b/code-interpreter reads as
# `Result.chart` (type, title, elements, axis labels, ticks and scales).
# The server maps the MIME type below to the result line's `chart` key.
# Everything is defined inside one function so the user's namespace gets
# no new names; matplotlib is only looked at once the user has imported it.


def _warren_install_chart_formatter():
    import math
    import sys

    from IPython import get_ipython
    from IPython.core.formatters import BaseFormatter
    from traitlets import ObjectName, Unicode

    mime = "application/vnd.warren.chart+json"


    def plain(value):
        """A JSON-safe scalar (numpy numbers, NaN/inf as None)."""
        if hasattr(value, "item"):
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, (int, float, str)) or value is None:
            return value
        return str(value)

    def axis_kind(axis, scale):
        """linear/log/... as matplotlib says, or datetime/categorical when
        the axis carries dates or category names."""
        from matplotlib import category, dates

        if isinstance(axis.get_major_locator(), category.StrCategoryLocator):
            return "categorical"
        if isinstance(axis.get_major_formatter(),
                      (dates.AutoDateFormatter, dates.DateFormatter, dates.ConciseDateFormatter)):
            return "datetime"
        return scale

    def axis_value(axis, kind, value):
        from matplotlib import dates

        if kind == "datetime":
            try:
                return dates.num2date(value).isoformat()
            except (ValueError, OverflowError):
                return plain(value)
        if kind == "categorical" and axis.units is not None:
            for name, position in getattr(axis.units, "_mapping", {}).items():
                if position == value:
                    return str(name)
        return plain(value)

    def label_and_unit(text):
        """The unit in 'Time (s)' or 'Time [s]': 's'; None without one."""
        for opening, closing in (("(", ")"), ("[", "]")):
            if text.endswith(closing) and opening in text:
                return text[text.rindex(opening) + 1:-1].strip() or None
        return None

    def axes_2d(ax, chart_type):
        chart = {"type": chart_type, "title": ax.get_title(), "elements": []}
        for name, axis, scale in (("x", ax.xaxis, ax.get_xscale()), ("y", ax.yaxis, ax.get_yscale())):
            label = axis.get_label().get_text()
            kind = axis_kind(axis, scale)
            chart[name + "_label"] = label or None
            chart[name + "_unit"] = label_and_unit(label) if label else None
            if chart_type in ("line", "scatter"):
                chart[name + "_scale"] = kind
                chart[name + "_ticks"] = [axis_value(axis, kind, t) for t in axis.get_ticklocs()]
                chart[name + "_tick_labels"] = [t.get_text() for t in axis.get_ticklabels()]
        return chart

    def points(ax, xs, ys):
        kx, ky = axis_kind(ax.xaxis, ax.get_xscale()), axis_kind(ax.yaxis, ax.get_yscale())
        return [[axis_value(ax.xaxis, kx, x), axis_value(ax.yaxis, ky, y)] for x, y in zip(xs, ys)]

    def series_label(artist, index):
        label = artist.get_label() or ""
        return f"Series {index}" if label.startswith("_") or not label else label

    def describe_axes(ax):
        """One Axes as a chart dict, or None when it holds nothing we read."""
        from matplotlib.collections import PathCollection
        from matplotlib.container import BarContainer
        from matplotlib.patches import Wedge

        wedges = [p for p in ax.patches if isinstance(p, Wedge)]
        if wedges:
            return {"type": "pie", "title": ax.get_title(), "elements": [
                {"label": w.get_label() or f"Slice {i}",
                 "angle": plain(abs(w.theta2 - w.theta1)), "radius": plain(w.r)}
                for i, w in enumerate(wedges)]}
        bars = [c for c in ax.containers if isinstance(c, BarContainer)]
        if bars:
            chart = axes_2d(ax, "bar")
            horizontal = getattr(bars[0], "orientation", "vertical") == "horizontal"
            axis = ax.yaxis if horizontal else ax.xaxis
            names = {round(float(loc), 6): t.get_text()
                     for loc, t in zip(axis.get_ticklocs(), axis.get_ticklabels())}
            for index, container in enumerate(bars):
                group = series_label(container, index)
                for rect in container.patches:
                    where = rect.get_y() + rect.get_height() / 2 if horizontal else rect.get_x() + rect.get_width() / 2
                    value = rect.get_width() if horizontal else rect.get_height()
                    chart["elements"].append({"label": names.get(round(where, 6), str(plain(where))),
                                              "value": str(plain(value)), "group": group})
            return chart
        scatters = [c for c in ax.collections if isinstance(c, PathCollection)]
        lines = [line for line in ax.get_lines() if len(line.get_xdata(orig=False)) > 0]
        if scatters and not lines:
            chart = axes_2d(ax, "scatter")
            for index, collection in enumerate(scatters):
                offsets = collection.get_offsets()
                chart["elements"].append({"label": series_label(collection, index),
                                          "points": points(ax, offsets[:, 0], offsets[:, 1])})
            return chart
        if lines:
            chart = axes_2d(ax, "line")
            for index, line in enumerate(lines):
                chart["elements"].append({"label": series_label(line, index),
                                          "points": points(ax, line.get_xdata(orig=False), line.get_ydata(orig=False))})
            return chart
        return None

    def describe_figure(figure):
        try:
            charts = [c for c in (describe_axes(ax) for ax in figure.get_axes()) if c]
            if not charts:
                return None
            if len(charts) == 1:
                return charts[0]
            title = figure._suptitle.get_text() if getattr(figure, "_suptitle", None) else ""
            return {"type": "superchart", "title": title, "elements": charts}
        except Exception:  # a figure we cannot read: the PNG still goes out
            return None

    class ChartFormatter(BaseFormatter):
        """Figures only, decided here: matplotlib's inline backend removes
        every formatter's registration for Figure when it activates."""
        format_type = Unicode(mime)
        print_method = ObjectName("_repr_warren_chart_")
        _return_type = dict

        def __call__(self, obj):
            figure_module = sys.modules.get("matplotlib.figure")
            if self.enabled and figure_module and isinstance(obj, figure_module.Figure):
                return describe_figure(obj)
            return None

    shell = get_ipython()
    if shell is not None and mime not in shell.display_formatter.formatters:
        shell.display_formatter.formatters[mime] = ChartFormatter(parent=shell.display_formatter)


_warren_install_chart_formatter()
del _warren_install_chart_formatter
