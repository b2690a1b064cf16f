"""stellarnn.runner"""
