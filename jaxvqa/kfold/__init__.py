"""The K-fold protocol: variants × folds trained as stacked models in one vmapped program
(protocol), the folds by family and their sampler (folds), the stacked step (stacked), the fold
reports (report) and the ship variant written as a scorer (ship)."""
