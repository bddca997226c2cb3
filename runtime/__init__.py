"""tsym.runtime: structures -> graphs -> XPaiNN (or any e3nn backbone) -> compiled heads."""
