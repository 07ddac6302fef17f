"""The feedback loop: offer-quality facts, purchase attribution and the offer-quality report."""
