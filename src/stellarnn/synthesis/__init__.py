"""stellarnn.synthesis"""
