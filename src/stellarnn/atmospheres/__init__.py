"""stellarnn.atmospheres"""
