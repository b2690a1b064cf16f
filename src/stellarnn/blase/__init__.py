"""stellarnn.blase"""
