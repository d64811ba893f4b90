"""The ipywidgets form of the packet explorer; imported only when ipywidgets and a kernel are there.

The widget is a `VBox` of standard widgets. Its parts carry CSS classes
(`pktmask-flow`, `pktmask-packet`, `pktmask-facts`, `pktmask-before`,
`pktmask-after`) so that a page, or a browser test, can find them.
"""

from __future__ import annotations

import logging

import ipywidgets as widgets

from pktmask_nb.explorer import (
    ALL_FLOWS,
    OTHER_PACKETS,
    ExplorerPacket,
    after_html,
    before_html,
    facts_html,
)
from pktmask_nb.hexdump import legend_html

logger = logging.getLogger(__name__)


class ExplorerWidget(widgets.VBox):
    """Flow Dropdown and packet IntSlider over loaded packets, with facts and before/after hex dumps.

    `select(frame)` shows an input frame from code, as the controls would.
    """

    def __init__(self, packets: list[ExplorerPacket]) -> None:
        self._packets = packets
        self._groups: dict[str, list[ExplorerPacket]] = {ALL_FLOWS: packets}
        for packet in packets:
            self._groups.setdefault(packet.conversation or OTHER_PACKETS, []).append(packet)

        self.flow_dropdown = widgets.Dropdown(
            options=[(f"{name} ({len(group)} packets)", name) for name, group in self._groups.items()],
            value=ALL_FLOWS,
            description="flow",
            layout=widgets.Layout(width="60%"),
        )
        self.packet_slider = widgets.IntSlider(
            min=0, max=len(packets) - 1, value=0, description="packet", continuous_update=False
        )
        self.frame_label = widgets.HTML()
        self.facts = widgets.HTML()
        self.before = widgets.HTML(layout=widgets.Layout(width="50%", overflow="auto"))
        self.after = widgets.HTML(layout=widgets.Layout(width="50%", overflow="auto"))
        for widget, css_class in (
            (self.flow_dropdown, "pktmask-flow"),
            (self.packet_slider, "pktmask-packet"),
            (self.facts, "pktmask-facts"),
            (self.before, "pktmask-before"),
            (self.after, "pktmask-after"),
        ):
            widget.add_class(css_class)

        self.flow_dropdown.observe(self._on_flow, names="value")
        self.packet_slider.observe(self._on_packet, names="value")
        controls = widgets.HBox([self.flow_dropdown, self.packet_slider, self.frame_label])
        panes = widgets.HBox([self.before, self.after])
        super().__init__([controls, self.facts, widgets.HTML(legend_html()), panes])
        self._show()

    def __repr__(self) -> str:
        return (
            f"ExplorerWidget: {len(self._packets)} packets loaded, showing input frame {self.current.frame}"
        )

    @property
    def current(self) -> ExplorerPacket:
        """The packet shown now."""
        return self._groups[self.flow_dropdown.value][self.packet_slider.value]

    def select(self, frame: int) -> None:
        """Show input frame `frame` within all flows. Raises KeyError for a frame not loaded."""
        for index, packet in enumerate(self._packets):
            if packet.frame == frame:
                self.flow_dropdown.value = ALL_FLOWS
                self.packet_slider.value = index
                return
        raise KeyError(f"frame {frame} is not among the {len(self._packets)} loaded packets")

    def _on_flow(self, change: dict) -> None:
        group = self._groups[change["new"]]
        # Reset the value before the bound, so the slider never points past the new group.
        self.packet_slider.value = 0
        self.packet_slider.max = len(group) - 1
        self._show()

    def _on_packet(self, change: dict) -> None:
        self._show()

    def _show(self) -> None:
        packet = self.current
        group = self._groups[self.flow_dropdown.value]
        self.frame_label.value = (
            f"input frame <b>{packet.frame}</b> ({self.packet_slider.value + 1} of {len(group)})"
        )
        self.facts.value = facts_html(packet)
        self.before.value = before_html(packet)
        self.after.value = after_html(packet)
        logger.debug("explorer shows frame %d", packet.frame)
