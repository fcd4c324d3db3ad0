"""Glossary: the words a class meets on the other pages, each explained once."""

from __future__ import annotations

import streamlit as st

from pages.common import lab
from pages.learn import GLOSSARY

lab()
st.title("Glossary")
st.markdown("The words the other pages use, in the order you meet them.")
for term, meaning in GLOSSARY.items():
    st.markdown(f"**{term[0].upper() + term[1:]}** — {meaning}")  # PPO stays PPO
