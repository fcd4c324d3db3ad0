"""The app in a phone's hand: tap targets a fingertip can hit, and forms that keep their main
button on the first screen. ``app.py`` calls :func:`fit_phones` once per run; desktops with a
mouse are left as Streamlit draws them.

Streamlit stacks columns one under another below 640 px, so a form of four settings in a row
becomes four rows and its button slides off the first screen: on a narrow screen a form's
settings go two to a row instead. Charts keep their plot at phone width on their own
(:mod:`pages.common`: titles of short lines, widths from their frame).
"""

from __future__ import annotations

import streamlit as st

#: The smallest tap target (CSS px): Apple's 44 pt, about a fingertip (WCAG 2.5.5 asks as much).
TAP = 44

#: What keeps the whole width of a phone: charts, pictures, tables, a list of chosen names, a row.
_WIDE = (
    '[data-testid="stVegaLiteChart"], [data-testid="stImage"], [data-testid="stDataFrame"], '
    '[data-testid="stMultiSelect"], [data-testid="stHorizontalBlock"]'
)
#: A row that holds no chart, picture, table or row of its own, and either three or more columns
#: or a field in its first and its last column (``:has`` cannot nest: "in each" is not written).
ROW_OF_SMALL_THINGS = (
    f'[data-testid="stHorizontalBlock"]:not(:has({_WIDE})):is(:has(> [data-testid="stColumn"]:nth-child(3)), '
    ':has(> [data-testid="stColumn"]:first-child input):has(> [data-testid="stColumn"]:last-child input))'
)

_CSS = f"""
@media (max-width: 640px), (pointer: coarse) {{
  /* Buttons of every kind (forms, downloads, the menu's), links to pages and the menu's rows. */
  button[data-testid^="stBaseButton"], [data-testid="stExpandSidebarButton"],
  [data-testid="stSidebarCollapseButton"] button, [data-testid="stMainMenuButton"] {{
    min-height: {TAP}px; min-width: {TAP}px;
  }}
  [data-testid="stSidebarNavLink"], [data-testid="stPageLink"] a {{
    min-height: {TAP}px; display: flex; align-items: center;
  }}
  /* A choice is its whole row, not its 13 px dot. */
  [data-testid="stCheckbox"] label, [data-testid="stRadioOption"] {{
    min-height: {TAP}px; align-items: center;
  }}
  [data-testid="stRadio"] [role="radiogroup"] {{ row-gap: 0; }}
  /* Fields, their + and − and the folds that hide settings. */
  [data-baseweb="select"] > div, [data-testid="stTextInput"] [data-baseweb="input"],
  [data-testid="stNumberInputContainer"] {{
    min-height: {TAP}px;
  }}
  [data-testid="stNumberInputStepDown"], [data-testid="stNumberInputStepUp"] {{
    min-width: {TAP}px; min-height: {TAP}px;
  }}
  [data-testid="stExpander"] summary, [data-baseweb="tab"] {{ min-height: {TAP}px; }}
  /* The (?) after a label stays small to the eye; the finger gets a 44 px square around it. */
  [data-testid="stTooltipHoverTarget"] > button {{ position: relative; }}
  [data-testid="stTooltipHoverTarget"] > button::after {{
    content: ""; position: absolute; inset: -14px;
  }}
}}
@media (max-width: 640px) {{
  /* Less room above the title: Streamlit's header is 60 px tall. */
  [data-testid="stMainBlockContainer"] {{ padding-top: 4rem; }}
  h1 {{ font-size: 2.25rem !important; }}
  h2 {{ font-size: 1.5rem !important; }}
  h3 {{ font-size: 1.25rem !important; }}
  [data-testid="stVerticalBlock"] {{ gap: 0.75rem; }}
  /* Settings and figures two to a row, where Streamlit would give each its own: a form's
     columns, and any row of three or more columns without a chart, picture or table (those
     keep the whole width). */
  [data-testid="stForm"] [data-testid="stHorizontalBlock"],
  {ROW_OF_SMALL_THINGS} {{
    flex-wrap: wrap; row-gap: 0.5rem;
  }}
  [data-testid="stForm"] [data-testid="stColumn"],
  {ROW_OF_SMALL_THINGS} > [data-testid="stColumn"] {{
    min-width: calc(50% - 0.5rem) !important; width: calc(50% - 0.5rem) !important; flex: 1 1 calc(50% - 0.5rem);
  }}
}}
"""


def fit_phones() -> None:
    """Put the phone rules in the page (a style alone takes no room in it)."""
    st.html(f"<style>{_CSS}</style>")
