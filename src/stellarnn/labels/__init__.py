"""stellarnn.labels"""
